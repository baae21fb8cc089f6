"""MLflow: one experiment per model, every run logged, versions promoted only on merit.

Each training run logs its parameters (FeatureService, data snapshot, git commit, seed,
horizons), the evaluation table of the model and its baselines, plots, and the model as an
MLflow pyfunc with signature and input example, registered as ``kizuna-<name>``. The gate
then scores the current ``champion`` on the *same* held-out rows in the same run: the new
version takes the ``champion`` alias only if it is better on the model's primary metric;
otherwise it becomes ``challenger``. The verdict and its reason are tags on the version.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from dataclasses import dataclass
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from kizuna.settings import Settings
from kizuna.training.base import MODEL_ROW, better
from kizuna.training.cards import CARD_ARTIFACT, model_card
from kizuna.training.models import MODEL_NAMES, spec
from kizuna.training.trainer import TrainResult, evaluate

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "kizuna.champion_history"
# Requirements of a logged model; kizuna itself must be installed where it is loaded.
_REQUIREMENTS = ("lightgbm", "scikit-learn", "pandas", "numpy", "lifetimes")


class RegistryError(ValueError):
    """The registry cannot do what was asked; the message says what to do instead."""


def registered_name(model: str) -> str:
    return f"kizuna-{model}"


class KizunaPyfunc(mlflow.pyfunc.PythonModel):
    """A Kizuna model as an MLflow pyfunc: feature columns in, named outputs out."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self.model.predict(model_input)


def client(settings: Settings) -> MlflowClient:
    """A client of the configured tracking store (created on first use)."""
    if settings.mlflow_tracking_uri is None:
        settings.artifact_root.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    return MlflowClient(settings.tracking_uri, settings.tracking_uri)


def experiment_id(settings: Settings, model: str) -> str:
    """The experiment ``kizuna-<model>``, created with its artifacts under ``mlruns``."""
    mlf = client(settings)
    name = registered_name(model)
    found = mlf.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    location = None
    if settings.mlflow_tracking_uri is None:
        location = (settings.artifact_root / name).as_uri()
    return mlf.create_experiment(name, artifact_location=location)


def git_commit() -> str:
    """The checked-out commit of the code that trained (``+dirty`` with local changes)."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{sha}+dirty" if dirty else sha


@dataclass(frozen=True)
class Verdict:
    """What the promotion gate decided for one new version."""

    model: str
    version: str
    alias: str
    reason: str
    metric: str
    candidate: float
    champion: float | None
    champion_version: str | None
    run_id: str


def load(settings: Settings, model: str, alias_or_version: str = CHAMPION) -> Any:
    """The Kizuna model object of a registered version (by alias or number)."""
    client(settings)
    ref = alias_or_version
    uri = (
        f"models:/{registered_name(model)}/{ref}"
        if ref.isdigit()
        else (f"models:/{registered_name(model)}@{ref}")
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.pyfunc.load_model(uri).unwrap_python_model().model


def champion_version(settings: Settings, model: str) -> str | None:
    try:
        return str(
            client(settings).get_model_version_by_alias(registered_name(model), CHAMPION).version
        )
    except MlflowException:
        return None


def _log_table(table: pd.DataFrame, name: str) -> None:
    mlflow.log_text(table.to_csv(float_format="%.6g"), f"{name}.csv")
    mlflow.log_text(table.to_string(float_format=lambda v: f"{v:.4f}"), f"{name}.txt")


def _log_metrics(table: pd.DataFrame, prefix: str = "") -> None:
    metrics: dict[str, float] = {}
    for scorer, row in table.iterrows():
        for metric, value in row.items():
            if isinstance(value, int | float | np.floating) and np.isfinite(value):
                key = f"{metric}" if scorer == MODEL_ROW else f"{scorer}.{metric}"
                metrics[f"{prefix}{key}"] = float(value)
    mlflow.log_metrics(metrics)


def _requirements() -> list[str]:
    return [f"{name}=={package_version(name)}" for name in _REQUIREMENTS]


def _incumbent_score(
    settings: Settings, result: TrainResult, version: str | None
) -> tuple[float | None, str]:
    """The champion's gate metric on ``result``'s held-out rows, or why it has none."""
    if version is None:
        return None, ""
    try:
        incumbent = load(settings, result.name, CHAMPION)
        table = evaluate(result.name, incumbent, result.test)
        return float(table.loc[MODEL_ROW, spec(result.name).gate_metric]), ""
    except Exception as exc:  # a champion that cannot score loses the gate, and says why
        log.warning("champion v%s cannot score the holdout: %s", version, exc)
        return None, f"{type(exc).__name__}: {exc}"


def _gate(
    name: str,
    candidate: float,
    incumbent_version: str | None,
    incumbent_score: float | None,
    incumbent_error: str,
    tolerance: float,
) -> tuple[str, str]:
    """The alias a new version of model ``name`` earns on its gate metric, and why."""
    model_spec = spec(name)
    metric = model_spec.gate_metric
    direction = "higher" if model_spec.higher_is_better else "lower"
    if incumbent_version is None:
        alias, reason = CHAMPION, f"first version: no champion to beat ({metric} {candidate:.4f})"
    elif incumbent_score is None:
        alias = CHAMPION
        reason = f"champion v{incumbent_version} cannot score this holdout ({incumbent_error})"
    elif better(candidate, incumbent_score, model_spec.higher_is_better, tolerance):
        alias = CHAMPION
        reason = (
            f"{metric} {candidate:.4f} beats champion v{incumbent_version}'s "
            f"{incumbent_score:.4f} on the same holdout ({direction} is better)"
        )
    else:
        alias = CHALLENGER
        reason = (
            f"{metric} {candidate:.4f} does not beat champion v{incumbent_version}'s "
            f"{incumbent_score:.4f} on the same holdout ({direction} is better)"
        )
    return alias, reason


def log_and_gate(
    settings: Settings,
    result: TrainResult,
    figures: dict[str, Any] | None = None,
    tolerance: float = 0.0,
) -> Verdict:
    """Log ``result`` as a run, register it, and let the gate decide its alias.

    Args:
        settings: the tracking URI.
        result: a trained and evaluated model.
        figures: name -> matplotlib Figure, logged as PNG artifacts.
        tolerance: how much better than the champion the new version must be.
    """
    mlf = client(settings)
    name = result.name
    model_spec = spec(name)
    metric = model_spec.gate_metric
    registered = registered_name(name)
    commit = git_commit()
    columns = getattr(result.model, "input_columns", result.features)
    example = result.test[columns].head(5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signature = infer_signature(example, result.model.predict(example))
    incumbent_version = champion_version(settings, name)
    incumbent_score, incumbent_error = _incumbent_score(settings, result, incumbent_version)
    candidate = float(result.evaluation.loc[MODEL_ROW, metric])
    with mlflow.start_run(experiment_id=experiment_id(settings, name)) as run:
        mlflow.set_tags(
            {
                "feature_service": model_spec.service,
                "data_snapshot": result.params["data_snapshot"],
                "git_commit": commit,
            }
        )
        mlflow.log_params({**result.params, "git_commit": commit})
        _log_metrics(result.evaluation)
        _log_table(result.evaluation, "evaluation")
        if incumbent_score is not None:
            mlflow.log_metric(f"champion.{metric}", incumbent_score)
        for fig_name, fig in (figures or {}).items():
            mlflow.log_figure(fig, f"plots/{fig_name}.png")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=KizunaPyfunc(result.model),
                signature=signature,
                input_example=example,
                registered_model_name=registered,
                pip_requirements=_requirements(),
            )
    version = str(info.registered_model_version)
    alias, reason = _gate(
        name, candidate, incumbent_version, incumbent_score, incumbent_error, tolerance
    )
    if alias == CHAMPION:
        _set_champion(mlf, registered, version)
    else:
        mlf.set_registered_model_alias(registered, CHALLENGER, version)
    for key, value in {
        "gate": alias,
        "gate_reason": reason,
        "primary_metric": metric,
        metric: f"{candidate:.6f}",
        "feature_service": model_spec.service,
        "data_snapshot": result.params["data_snapshot"],
        "git_commit": commit,
    }.items():
        mlf.set_model_version_tag(registered, version, key, value)
    mlf.set_tag(run.info.run_id, "gate", f"{alias}: {reason}")
    log.info("%s v%s -> %s: %s", registered, version, alias, reason)
    verdict = Verdict(
        name,
        version,
        alias,
        reason,
        metric,
        candidate,
        incumbent_score,
        incumbent_version,
        run.info.run_id,
    )
    mlf.log_text(run.info.run_id, model_card(result, verdict), CARD_ARTIFACT)
    return verdict


def model_version(settings: Settings, model: str, ref: str = CHAMPION) -> Any:
    """The registered version ``ref`` names: a number, or an alias (champion, challenger)."""
    _check_model(model)
    mlf = client(settings)
    registered = registered_name(model)
    try:
        if ref.isdigit():
            return mlf.get_model_version(registered, ref)
        return mlf.get_model_version_by_alias(registered, ref)
    except MlflowException:
        which = f"version {ref}" if ref.isdigit() else ref
        raise RegistryError(
            f"{registered} has no {which}; see `kizuna models list --model {model}`"
        ) from None


def card(settings: Settings, model: str, version: str | None = None) -> tuple[str, str]:
    """The model card of ``version`` (default: the champion) and that version's number."""
    found = model_version(settings, model, version or CHAMPION)
    registered = registered_name(model)
    mlf = client(settings)
    try:
        path = mlf.download_artifacts(found.run_id, CARD_ARTIFACT)
    except (MlflowException, OSError):
        raise RegistryError(
            f"{registered} v{found.version} was registered without a model card (before "
            f"cards existed); retrain with `kizuna train {model}` to get one"
        ) from None
    return Path(path).read_text(), str(found.version)


def _history(mlf: MlflowClient, registered: str) -> list[str]:
    tags = mlf.get_registered_model(registered).tags
    return [v for v in tags.get(HISTORY_TAG, "").split(",") if v]


def _set_champion(mlf: MlflowClient, registered: str, version: str) -> None:
    history = _history(mlf, registered)
    mlf.set_registered_model_alias(registered, CHAMPION, version)
    mlf.set_registered_model_tag(registered, HISTORY_TAG, ",".join([*history, version]))
    try:
        if str(mlf.get_model_version_by_alias(registered, CHALLENGER).version) == version:
            mlf.delete_registered_model_alias(registered, CHALLENGER)
    except MlflowException:
        pass


def _check_model(model: str) -> None:
    if model not in MODEL_NAMES:
        raise RegistryError(f"unknown model {model!r}; choose one of {', '.join(MODEL_NAMES)}")


def promote(settings: Settings, model: str, version: str, reason: str) -> None:
    """Make ``version`` the champion by hand (the reason is recorded on the version)."""
    _check_model(model)
    mlf, registered = client(settings), registered_name(model)
    try:
        mlf.get_model_version(registered, version)
    except MlflowException as exc:
        raise RegistryError(
            f"{registered} has no version {version}; see `kizuna models list`"
        ) from exc
    _set_champion(mlf, registered, version)
    mlf.set_model_version_tag(registered, version, "gate", CHAMPION)
    mlf.set_model_version_tag(registered, version, "gate_reason", f"promoted by hand: {reason}")


def rollback(settings: Settings, model: str) -> str:
    """Give the champion alias back to the version that held it before; returns it."""
    _check_model(model)
    mlf, registered = client(settings), registered_name(model)
    try:
        history = _history(mlf, registered)
    except MlflowException as exc:
        raise RegistryError(f"{registered} is not registered; train it first") from exc
    if len(history) < 2:
        raise RegistryError(
            f"{registered} has no earlier champion to roll back to; "
            "promote a version with `kizuna models promote`"
        )
    current, previous = history[-1], history[-2]
    mlf.set_registered_model_alias(registered, CHAMPION, previous)
    mlf.set_registered_model_tag(registered, HISTORY_TAG, ",".join(history[:-1]))
    mlf.set_model_version_tag(registered, current, "gate", "rolled back")
    mlf.set_model_version_tag(
        registered, previous, "gate_reason", f"champion again after rolling back v{current}"
    )
    return previous


def list_versions(settings: Settings, model: str | None = None) -> pd.DataFrame:
    """Every registered version: aliases, primary metric, gate verdict and reason."""
    mlf = client(settings)
    rows = []
    for name in [model] if model else MODEL_NAMES:
        registered = registered_name(name)
        try:
            versions = mlf.search_model_versions(f"name = '{registered}'")
            aliases = mlf.get_registered_model(registered).aliases or {}
        except MlflowException:
            continue
        for v in versions:
            held = sorted(a for a, number in aliases.items() if str(number) == str(v.version))
            tags = v.tags or {}
            metric = tags.get("primary_metric", "")
            rows.append(
                {
                    "model": registered,
                    "version": int(v.version),
                    "aliases": ",".join(held),
                    "metric": metric,
                    "value": float(tags[metric]) if metric in tags else float("nan"),
                    "gate_reason": tags.get("gate_reason", ""),
                    "created": pd.Timestamp(v.creation_timestamp, unit="ms", tz="UTC"),
                    "run_id": v.run_id,
                }
            )
    columns = ["model", "version", "aliases", "metric", "value", "gate_reason", "created", "run_id"]
    return pd.DataFrame(rows, columns=columns).sort_values(["model", "version"], ignore_index=True)
