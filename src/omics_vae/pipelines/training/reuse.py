"""Train once: reuse a finished model trained on the same data with the same parameters.

A training run is tagged in MLflow with a fingerprint of what decides its result: the
processed data's content, its processing record and the effective training parameters.
Before training, the node looks for a run with that tag whose checkpoint, history and
summary were logged, and returns those instead of training again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from anndata import AnnData
from mlflow.exceptions import MlflowException

import omics_vae
from omics_vae.data.fingerprint import fingerprint_anndata
from omics_vae.datasets.lightning_checkpoint_dataset import model_from_checkpoint, read_checkpoint
from omics_vae.models import BaseVAE
from omics_vae.params import validate_section
from omics_vae.pipelines.training.nodes import COUNTS_LAYER, train_model
from omics_vae.pipelines.training.params import TrainingParams

logger = logging.getLogger(__name__)

FINGERPRINT_TAG = "training_fingerprint"
# Where a training run's files land in MLflow (catalog metadata.mlflow.artifact_path).
CHECKPOINT_ARTIFACT = "model/model.ckpt"
SUMMARY_ARTIFACT = "model/training_summary.json"
HISTORY_ARTIFACT = "reports/training_history.csv"
# Settings that change how a run goes, not what it learns.
OPERATIONAL_KEYS = (
    ("resume_from",),
    ("checkpoint_dir",),
    ("dry_run",),
    ("trainer", "num_threads"),
    ("trainer", "enable_progress_bar"),
)


def train_or_reuse_model(
    model_input: AnnData, params: dict[str, Any], force_retrain: bool = False
) -> tuple[BaseVAE, pd.DataFrame, dict[str, Any]]:
    """The training node: reuse an identical finished model, or train one.

    Args:
        model_input: Processed cells (see ``train_model``).
        params: The ``training`` parameter block.
        force_retrain: Train even when an identical model exists.

    Returns:
        Model, per-epoch history and training summary, as ``train_model`` returns them;
        the summary also carries ``training_fingerprint`` and, when reused,
        ``reused_from_run``.
    """
    config = validate_section("training", TrainingParams, params)
    fingerprint = training_fingerprint(model_input, config)
    if not force_retrain:
        found = find_trained_model(fingerprint)
        if found is not None:
            logger.info(
                "Reusing the %s model of MLflow run %s: same data and training parameters "
                "(fingerprint %s). Pass --params force_retrain=true to train again.",
                config.model,
                found.run_id,
                fingerprint,
            )
            summary = {**found.summary, FINGERPRINT_TAG: fingerprint}
            summary["reused_from_run"] = found.run_id
            return found.model, found.history, summary
    model, history, summary = train_model(model_input, params)
    return model, history, {**summary, FINGERPRINT_TAG: fingerprint, "reused_from_run": None}


def training_fingerprint(model_input: AnnData, config: TrainingParams) -> str:
    """A hash of everything that decides a trained model: data, processing, parameters."""
    parameters = config.model_dump(mode="json")
    for path in OPERATIONAL_KEYS:
        _drop(parameters, path)
    record = {
        "data": fingerprint_anndata(model_input, COUNTS_LAYER),
        "processing": model_input.uns.get("data_processing", {}).get("params", {}),
        "training": parameters,
        "omics_vae": omics_vae.__version__,
    }
    encoded = json.dumps(record, sort_keys=True, default=str).encode()
    return hashlib.blake2b(encoded, digest_size=10).hexdigest()


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


def find_trained_model(fingerprint: str) -> TrainedModel | None:
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
        found = _load_trained_model(client, run.info.run_id)
        if found is not None:
            return found
    return None


def _load_trained_model(client: mlflow.MlflowClient, run_id: str) -> TrainedModel | None:
    with tempfile.TemporaryDirectory() as folder:
        try:
            paths = {
                artifact: Path(client.download_artifacts(run_id, artifact, folder))
                for artifact in (CHECKPOINT_ARTIFACT, SUMMARY_ARTIFACT, HISTORY_ARTIFACT)
            }
        except (MlflowException, OSError):
            # An interrupted run tagged before its files were logged: not reusable.
            return None
        source = f"mlflow run {run_id}: {CHECKPOINT_ARTIFACT}"
        checkpoint = read_checkpoint(paths[CHECKPOINT_ARTIFACT].read_bytes(), source=source)
        return TrainedModel(
            run_id=run_id,
            model=model_from_checkpoint(checkpoint, source=source),
            history=pd.read_csv(paths[HISTORY_ARTIFACT]),
            summary=json.loads(paths[SUMMARY_ARTIFACT].read_text()),
        )
