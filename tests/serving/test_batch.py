"""kizuna score (the nightly file) and kizuna lists, from the command line."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from kizuna.serving.decisions import Offer, Policy, best_offers
from kizuna.serving.lists import COLUMNS
from kizuna.serving.scoring import latest_vectors
from tests.world import run_cli


def test_score_writes_every_customer_with_a_best_offer(trained_home, tmp_path) -> None:
    out = tmp_path / "scores.parquet"
    result = run_cli(trained_home, "score", "--out", str(out), "--chunk", "1000")
    assert result.returncode == 0, result.stderr
    assert "customers/s" not in result.stdout and "/s)" in result.stderr  # progress lines
    table = pd.read_parquet(out)
    assert set(table["customer_id"]) == set(latest_vectors(trained_home)["customer_id"])
    scored = table[table["scored"]]
    assert scored["churn_probability"].between(0, 1).all()
    # A profiling opt-out keeps its row and consent flags, and nothing derived from profiling.
    opted_out = table[table["consent_profiling"].astype("boolean").eq(False).fillna(False)]
    assert len(opted_out) > 0 and not opted_out["scored"].any()
    derived = [
        c
        for c in table.columns
        if c not in ("customer_id", "features_at", "loyalty_tier", "country", "scored")
        and not c.startswith("consent_")
        and not c.endswith("_model_version")  # which models wrote the file
    ]
    assert {"churn_probability", "rfm_segment", "best_offer_id", "uplift_email_10pct"} & set(
        derived
    ) >= {"churn_probability", "rfm_segment", "best_offer_id"}
    assert opted_out[derived].isna().all().all()
    assert table["scored"].sum() == len(table) - len(opted_out)
    assert {"best_offer_id", "best_offer_channel", "best_offer_expected_profit"} <= set(table)
    offered = table[table["best_offer_id"].notna()]
    assert len(offered) > 0 and (offered["best_offer_expected_profit"] > 0).all()
    emailed = offered[offered["best_offer_channel"] == "email"]
    assert emailed["consent_email"].astype(bool).all()
    assert table["churn_model_version"].nunique() == 1
    vectors = latest_vectors(trained_home).set_index("customer_id")
    tiers = table.set_index("customer_id")["loyalty_tier"]
    assert tiers.notna().all()
    assert (tiers.astype(str) == vectors.loc[tiers.index, "loyalty_tier"].astype(str)).all()


def test_lists_from_the_command_line_match_the_documented_columns(trained_home) -> None:
    result = run_cli(trained_home, "lists", "at-risk", "--min-churn", "0.5", "--limit", "20")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert 0 < len(rows) <= 20 and list(rows[0]) == COLUMNS
    assert all(r["loyalty_tier"] for r in rows)
    risk = [float(r["value_at_risk"]) for r in rows]
    assert risk == sorted(risk, reverse=True)


def test_best_offer_is_the_most_profitable_consented_one() -> None:
    at = datetime(2024, 6, 1, tzinfo=UTC)
    offers = {
        o.offer_id: o
        for o in [
            Offer(
                "a",
                "percent_discount",
                10,
                0.0,
                "email",
                datetime(2024, 1, 1, tzinfo=UTC),
                None,
                {},
            ),
            Offer("b", "free_shipping", 0, 1.0, "sms", datetime(2024, 1, 1, tzinfo=UTC), None, {}),
        ]
    }
    table = pd.DataFrame(
        {
            "uplift_a": [0.2, 0.2, 0.0],
            "p_buy_a": [0.3, 0.3, 0.3],
            "uplift_b": [0.3, 0.3, 0.3],
            "p_buy_b": [0.4, 0.4, 0.4],
            "consent_email": [True, True, True],
            "consent_sms": [True, False, True],
            "consent_profiling": [True, True, False],
            "profile_avg_order_value": [100.0, 100.0, 100.0],
        }
    )
    policy = Policy(0.3, {"email": 0.01, "sms": 0.05}, 0.0, 2, 14)
    best = best_offers(table, offers, policy, at)
    # a: 0.2*30 - 0.3*10 - 0.01 = 2.99; b: 0.3*30 - 0.4*1 - 0.05 = 8.55
    assert best["best_offer_id"].tolist() == ["b", "a", None]
    np.testing.assert_allclose(best["best_offer_expected_profit"][:2], [8.55, 2.99])
