"""Train once: reuse a finished model trained on the same data with the same parameters.

A training run is tagged in MLflow with a fingerprint of what decides its result: the
processed data's content, its processing record and the effective training parameters.
Before training, the training nodes (single-cell and paired) look for a run with that
tag whose checkpoint, history and summary were logged, and return those instead of
training again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from anndata import AnnData
from kedro.io.core import DatasetError
from mlflow.exceptions import MlflowException

import omics_vae
from omics_vae.data.fingerprint import fingerprint_values
from omics_vae.datasets import LightningCheckpointDataset
from omics_vae.models import BaseVAE
from omics_vae.models.checkpoints import encode_identity
from omics_vae.schemas.training import FitParams

logger = logging.getLogger(__name__)

FINGERPRINT_TAG = "training_fingerprint"
Trained = tuple[BaseVAE, pd.DataFrame, dict[str, Any]]


@dataclass(frozen=True)
class TrainingArtifacts:
    """Where a training run's files land in MLflow (the catalog entries'
    ``metadata.mlflow.artifact_path`` and file names)."""

    checkpoint: str
    summary: str
    history: str


SINGLE_CELL_ARTIFACTS = TrainingArtifacts(
    "model/model.ckpt", "model/training_summary.json", "reports/training_history.csv"
)
PAIRED_ARTIFACTS = TrainingArtifacts(
    "model/paired_model.ckpt",
    "model/paired_training_summary.json",
    "reports/paired_training_history.csv",
)
# Settings that change how a run goes, not what it learns.
OPERATIONAL_KEYS = (
    ("resume_from",),
    ("checkpoint_dir",),
    ("dry_run",),
    ("trainer", "num_threads"),
    ("trainer", "enable_progress_bar"),
)


def retrieve_or_train(
    train: Callable[[], Trained],
    *,
    fingerprint: str,
    artifacts: TrainingArtifacts,
    force_retrain: bool = False,
) -> Trained:
    """Reuse the finished model of the newest MLflow run tagged with ``fingerprint``, or
    call ``train``. Only inside an active MLflow run (as ``kedro run`` starts one).

    Returns:
        Model, per-epoch history and training summary; the summary carries
        ``training_fingerprint`` and ``reused_from_run`` (``None`` when trained here).
    """
    # Only tracked runs look: a node called outside `kedro run` (a notebook, a test) has
    # no store of its own to search.
    if not force_retrain and mlflow.active_run() is not None:
        found = find_trained_model(fingerprint, artifacts)
        if found is not None:
            logger.info(
                "Reusing the %s model of MLflow run %s: same data and training parameters "
                "(fingerprint %s). Pass --params force_retrain=true to train again.",
                found.summary.get("model"),
                found.run_id,
                fingerprint,
            )
            summary = {**found.summary, FINGERPRINT_TAG: fingerprint}
            summary["reused_from_run"] = found.run_id
            return found.model, found.history, summary
    model, history, summary = train()
    return model, history, {**summary, FINGERPRINT_TAG: fingerprint, "reused_from_run": None}


def training_identity(
    model_input: AnnData,
    data_fingerprint: str,
    config: FitParams,
    covariate_keys: Sequence[str] = (),
) -> dict[str, Any]:
    """Everything that decides a trained model, as a JSON-able record.

    Args:
        model_input: The processed data the model trains on (for its processing record
            and the covariate columns).
        data_fingerprint: Its content hash (``fingerprint_anndata``: cells, genes, split
            and the values the model reads).
        config: The validated training block.
        covariate_keys: The obs columns the model is given (labels, batches): relabelled
            cells with the same counts train another model.
    """
    parameters = config.model_dump(mode="json")
    for path in OPERATIONAL_KEYS:
        _drop(parameters, path)
    return {
        "data": data_fingerprint,
        "covariates": {key: fingerprint_values(model_input.obs[key]) for key in covariate_keys},
        # The processing record of either family (keys differ; absent ones are empty).
        "processing": {
            key: _plain(model_input.uns[key].get("params", model_input.uns[key]))
            for key in ("data_processing", "paired_processing")
            if key in model_input.uns
        },
        "training": parameters,
        "omics_vae": omics_vae.__version__,
    }


def fingerprint_of(identity: dict[str, Any]) -> str:
    """The training fingerprint: a short hash of a training identity."""
    return hashlib.blake2b(encode_identity(identity).encode(), digest_size=10).hexdigest()


def training_fingerprint(
    model_input: AnnData,
    data_fingerprint: str,
    config: FitParams,
    covariate_keys: Sequence[str] = (),
) -> str:
    """A hash of everything that decides a trained model (see ``training_identity``)."""
    return fingerprint_of(training_identity(model_input, data_fingerprint, config, covariate_keys))


def _plain(value: Any) -> Any:
    """A processing record as JSON would give it back (arrays become lists), so a record
    read from a checkpoint compares equal to one read from the data."""
    return json.loads(json.dumps(value, sort_keys=True, default=_jsonable))


def _jsonable(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _drop(tree: dict[str, Any], path: tuple[str, ...]) -> None:
    *parents, leaf = path
    for part in parents:
        tree = tree.get(part)
        if not isinstance(tree, dict):
            return
    tree.pop(leaf, None)


@dataclass
class TrainedModel:
    run_id: str
    model: BaseVAE
    history: pd.DataFrame
    summary: dict[str, Any]


def find_trained_model(fingerprint: str, artifacts: TrainingArtifacts) -> TrainedModel | None:
    """The newest MLflow run tagged with ``fingerprint`` that logged a complete model."""
    client = mlflow.MlflowClient()
    try:
        experiments = [experiment.experiment_id for experiment in client.search_experiments()]
        runs = client.search_runs(
            experiments,
            filter_string=f"tags.{FINGERPRINT_TAG} = '{fingerprint}'",
            order_by=["attributes.start_time DESC"],
        )
    except MlflowException as error:
        logger.warning("Could not search MLflow for a trained model to reuse: %s", error)
        return None
    for run in runs:
        found = _load_trained_model(client, run.info.run_id, artifacts)
        if found is not None:
            return found
    if runs:
        logger.warning(
            "No stored model with fingerprint %s could be read; training afresh.", fingerprint
        )
    return None


def _load_trained_model(
    client: mlflow.MlflowClient, run_id: str, artifacts: TrainingArtifacts
) -> TrainedModel | None:
    names = (artifacts.checkpoint, artifacts.summary, artifacts.history)
    with tempfile.TemporaryDirectory() as folder:
        try:
            paths = {name: Path(client.download_artifacts(run_id, name, folder)) for name in names}
        except (MlflowException, OSError):
            # An interrupted run tagged before its files were logged: not reusable.
            return None
        try:
            model = LightningCheckpointDataset(filepath=str(paths[artifacts.checkpoint])).load()
            history = pd.read_csv(paths[artifacts.history])
            summary = json.loads(paths[artifacts.summary].read_text())
        except (DatasetError, ValueError, OSError, pd.errors.ParserError) as error:
            logger.warning(
                "The model stored in MLflow run %s has the same data and training parameters "
                "but its files cannot be read (%s); it is not reused.",
                run_id,
                _without_folder(str(error), folder),
            )
            return None
    return TrainedModel(run_id=run_id, model=model, history=history, summary=summary)


def _without_folder(message: str, folder: str) -> str:
    """The message with the deleted download folder replaced by the store's name."""
    return message.replace(f"{folder}/", "artifacts:/")
