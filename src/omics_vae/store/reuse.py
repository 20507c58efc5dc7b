"""Train once: the MLflow store as a cache of trained models, found by training fingerprint.

A training run is tagged in MLflow with its training fingerprint
(``omics_vae.training.identity``). Before training, ``retrieve_or_train`` looks for a run
with that tag whose checkpoint, history and summary were logged and can be read, and
returns those instead of training again.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException

from omics_vae.models.checkpoints import CheckpointError, load_model_file

if TYPE_CHECKING:
    from omics_vae.models.base import BaseVAE

logger = logging.getLogger(__name__)

FINGERPRINT_TAG = "training_fingerprint"

Trained = tuple["BaseVAE", pd.DataFrame, dict[str, Any]]


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


@dataclass(frozen=True)
class ModelStore:
    """An MLflow store searched for finished models by training fingerprint.

    Attributes:
        tracking_uri: The store; ``None``: MLflow's current tracking URI.
    """

    tracking_uri: str | None = None

    def client(self) -> mlflow.MlflowClient:
        return mlflow.MlflowClient(tracking_uri=self.tracking_uri)


def retrieve_or_train(
    train: Callable[[], Trained],
    *,
    fingerprint: str,
    artifacts: TrainingArtifacts,
    store: ModelStore | None,
    force_retrain: bool = False,
    dry_run: bool = False,
) -> Trained:
    """Reuse the finished model of the newest run in ``store`` tagged with
    ``fingerprint``, or call ``train``.

    Args:
        train: Trains the model when none is reused.
        fingerprint: The training fingerprint (``training.identity.fingerprint_of``).
        artifacts: Where a training run's files are in the store.
        store: The store to search; ``None`` (a node called outside ``kedro run``, in a
            notebook or a test): always train.
        force_retrain: Train even when an identical model exists.
        dry_run: ``train`` only prints the plan: neither reuse nor train a model.

    Returns:
        Model, per-epoch history and training summary; the summary carries
        ``training_fingerprint`` and ``reused_from_run`` (``None`` when trained here).
    """
    if not (force_retrain or dry_run) and store is not None:
        found = find_trained_model(fingerprint, artifacts, store)
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


@dataclass
class TrainedModel:
    run_id: str
    model: BaseVAE
    history: pd.DataFrame
    summary: dict[str, Any]


def find_trained_model(
    fingerprint: str, artifacts: TrainingArtifacts, store: ModelStore | None = None
) -> TrainedModel | None:
    """The newest run of ``store`` (default: the current tracking URI) tagged with
    ``fingerprint`` that logged a model that can be read."""
    client = (store or ModelStore()).client()
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
            model = load_model_file(paths[artifacts.checkpoint])
            history = pd.read_csv(paths[artifacts.history])
            summary = json.loads(paths[artifacts.summary].read_text())
        except (CheckpointError, ValueError, OSError, pd.errors.ParserError) as error:
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
