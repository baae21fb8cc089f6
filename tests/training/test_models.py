"""The model specs: each resolves to working parts, and the shared pipeline reads them
instead of asking a model's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kizuna.training import models
from kizuna.training.models import MODEL_NAMES, SEND, SPECS, resolve, spec
from kizuna.training.trainer import TrainingError, model_spec

ROOT = Path(__file__).resolve().parents[2]
# The shared pipeline: none of it may branch on which model it handles.
SHARED = [
    "training/trainer.py",
    "training/backtest.py",
    "training/registry.py",
    "training/runs.py",
    "training/plots.py",
    "training/baselines.py",
    "serving/scoring.py",
]


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_spec_names_parts_that_exist(name) -> None:
    s = spec(name)
    assert s.name == name == s.cls.name
    assert s.service.endswith("_v1") and callable(s.module.evaluate)
    assert s.gate_metric and isinstance(s.higher_is_better, bool)
    assert callable(resolve(s.figures))
    if s.baselines is not None:
        baselines = resolve(s.baselines)
        assert baselines.count_models and baselines.empty_row
    assert s.unit in (models.CUTOFF, SEND) and s.label_columns and s.to_train


def test_churn_comes_first_for_the_models_that_need_its_risk() -> None:
    needing = [n for n in MODEL_NAMES if SPECS[n].needs_churn_risk]
    first = MODEL_NAMES.index(models.CHURN_RISK_FROM)
    assert needing and all(first < MODEL_NAMES.index(n) for n in needing)


def test_an_unknown_model_is_refused_with_the_known_ones() -> None:
    with pytest.raises(TrainingError, match="unknown model 'chrun'; choose one of churn"):
        model_spec("chrun")


def _name_branches(path: Path) -> list[str]:
    """Comparisons of a value with a model's name (``name == "offers"``, ``x in
    ("churn", ...)``) in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Compare):
            continue
        for operand in [node.left, *node.comparators]:
            values = (
                operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [operand]
            )
            if any(isinstance(v, ast.Constant) and v.value in MODEL_NAMES for v in values):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_shared_pipeline_reads_the_spec_not_the_name() -> None:
    for file in SHARED:
        branches = _name_branches(ROOT / file)
        assert not branches, "\n".join(branches)
