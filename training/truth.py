"""On simulated data only: the offer model's estimated uplift against the true uplift.

The simulator writes, for every exposure and every offer of its channel, the exact
P(buy | offer) - P(buy | no offer) (``ground_truth/offer_effects.parquet``); no real
retailer can give that. Used by ``kizuna run`` and the tests.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from scipy import stats


def uplift_against_truth(model, test: pd.DataFrame, truth_dir: Path) -> pd.DataFrame:
    """Per offer, on the held-out exposures of its channel: mean estimated and mean true
    uplift, and the Spearman correlation of the two per exposure."""
    truth = pd.read_parquet(truth_dir / "offer_effects.parquet")
    predicted = model.predict(test)
    rows = {}
    for offer in model.offers_:
        on = (test["channel"] == model.offer_channels_[offer]).to_numpy()
        true = (
            truth[truth["offer_id"] == offer]
            .set_index("exposure_id")["true_uplift"]
            .reindex(test.loc[on, "exposure_id"])
            .to_numpy()
        )
        estimated = predicted.loc[on, f"uplift_{offer}"].to_numpy()
        known = ~pd.isna(true)
        rows[offer] = {
            "exposures": int(known.sum()),
            "mean_estimated_uplift": float(estimated[known].mean()),
            "mean_true_uplift": float(true[known].mean()),
            "spearman": float(stats.spearmanr(estimated[known], true[known]).statistic),
        }
    return pd.DataFrame.from_dict(rows, orient="index")
