"""What every Kizuna model shares: its inputs, its contract with the trainer, its verdict.

A model module (churn, repurchase, value, offers) defines one estimator class following
scikit-learn's contract and this protocol, and an ``evaluate`` function that scores the
model *and its baselines* on the same held-out rows, one row per scorer, so the trainer,
the promotion gate and the backtest treat all four alike.
"""

from __future__ import annotations

import os
from functools import cache
from typing import ClassVar, Protocol

import numpy as np
import pandas as pd

# The scorer name of a Kizuna model in an evaluation table; baselines use their own names.
MODEL_ROW = "kizuna"


def lgb_threads(n_jobs: int | None) -> int:
    """LightGBM's ``num_threads`` for a model's ``n_jobs``: None means every core."""
    return (os.cpu_count() or 1) if n_jobs is None else n_jobs


def lgb_matrix(x: pd.DataFrame, categories: list[list] | None, spare: int = 0) -> np.ndarray:
    """``x`` as the float matrix LightGBM predicts on, as LightGBM builds it from a frame.

    A category column becomes its code among the training categories (``categories``, a
    booster's ``pandas_categorical``: one list per category column, in column order), an
    unseen or missing value NaN; every other column a float. Built once, the matrix lets a
    model predict variants of the same rows (another period, arm or offer) by changing one
    column, where a frame would be copied and converted again for each: ``spare`` adds
    that many columns at the end (NaN) for the caller to set before each prediction.
    """
    out = np.full((len(x), x.shape[1] + spare), np.nan, order="F")
    remaining = iter(categories or [])
    for j, name in enumerate(x.columns):
        column = x[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            codes = pd.Categorical(column, categories=next(remaining)).codes
            out[:, j] = np.where(codes < 0, np.nan, codes)
        else:
            out[:, j] = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.ascontiguousarray(out)


@cache
def _catalog_types() -> dict[str, str]:
    from kizuna.features.catalog import FEATURES

    return {spec.name: spec.type for spec in FEATURES}


def model_inputs(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """The columns a model reads, typed the same way whatever the frame's dtypes.

    Catalog features take their type from the catalog: text becomes a pandas category
    (LightGBM splits on it and maps categories as in training), everything else a float.
    So a frame from Feast's offline store, the online store or an all-empty column all
    give the model identical inputs. Other columns (benchmarks' own features) are typed
    by their dtype.
    """
    catalog = _catalog_types()
    x = frame[features].copy()
    for name in features:
        dtype, kind = x[name].dtype, catalog.get(name)
        text = pd.api.types.is_object_dtype(dtype) or pd.api.types.is_string_dtype(dtype)
        if kind == "string" or (kind is None and text):
            x[name] = x[name].astype("category")
        elif kind is not None or pd.api.types.is_bool_dtype(dtype):
            x[name] = pd.to_numeric(x[name], errors="coerce").astype(float)
    return x


class KizunaModel(Protocol):
    """The contract between a model and the trainer.

    Attributes:
        name: the model's short name (``churn``); the registered model is ``kizuna-<name>``.
        service: the FeatureService it reads for training and serving.
        primary_metric: the metric the promotion gate compares.
        higher_is_better: the direction of ``primary_metric``.
    """

    name: ClassVar[str]
    service: ClassVar[str]
    primary_metric: ClassVar[str]
    higher_is_better: ClassVar[bool]

    def fit(self, train: pd.DataFrame, valid: pd.DataFrame, features: list[str]):
        """Train on ``train``; early-stop and calibrate on ``valid`` (a later cutoff)."""

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Named output columns, one row per row of ``frame`` (same index)."""


def better(candidate: float, incumbent: float, higher_is_better: bool, tolerance: float = 0.0):
    """Whether ``candidate`` beats ``incumbent`` by more than ``tolerance``."""
    if np.isnan(candidate):
        return False
    if np.isnan(incumbent):
        return True
    gain = candidate - incumbent if higher_is_better else incumbent - candidate
    return gain > tolerance
