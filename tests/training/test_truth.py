"""The offer model's uplift against the simulator's exact uplift, as `kizuna run` prints it."""

from __future__ import annotations

import pandas as pd

from kizuna.training.dataset import send_split
from kizuna.training.offers import OfferModel
from kizuna.training.truth import uplift_against_truth


def test_estimated_uplift_is_compared_with_the_truth_for_every_offer(sim_world) -> None:
    exposures = sim_world.exposures()
    moments = sorted({t.to_pydatetime() for t in pd.to_datetime(exposures["event_timestamp"])})
    split = send_split(moments, label_days=14)
    model = OfferModel(seed=7).fit(
        split.part(exposures, "train"),
        split.part(exposures, "valid"),
        sim_world.features("offers_v1"),
    )
    test = split.part(exposures, "test")
    table = uplift_against_truth(model, test, sim_world.truth)
    assert set(table.index) == set(model.offers_)
    assert (table["exposures"] > 500).all()
    # Measured on this world: Spearman 0.27-0.32, mean errors 0.005-0.014 per offer.
    assert (table["spearman"] > 0.2).all()
    assert ((table["mean_estimated_uplift"] - table["mean_true_uplift"]).abs() < 0.02).all()
    assert (table["mean_true_uplift"] > 0).all()
