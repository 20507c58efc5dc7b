"""Project hooks: parameter validation and MLflow artefact logging."""

from __future__ import annotations

import logging
from typing import Any

import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset

from omics_vae.params import validate_parameters
from omics_vae.pipelines.data_processing.params import DataProcessingParams
from omics_vae.pipelines.embedding.params import EmbeddingParams
from omics_vae.pipelines.evaluation.params import EvaluationParams
from omics_vae.pipelines.paired.params import PairedParams
from omics_vae.pipelines.training.params import TrainingParams

logger = logging.getLogger(__name__)

# The schema of each pipeline's parameter block, keyed by its top-level key.
PARAMETER_SCHEMAS = {
    "data_processing": DataProcessingParams,
    "training": TrainingParams,
    "embedding": EmbeddingParams,
    "evaluation": EvaluationParams,
    "paired": PairedParams,
}


class ParameterValidationHooks:
    """Checks every parameter block against its schema before any node runs."""

    @hook_impl
    def after_context_created(self, context) -> None:
        validate_parameters(context.params, PARAMETER_SCHEMAS)


class MlflowLineageHooks:
    """Puts a run's files and lineage into the active MLflow run.

    - A catalog entry with ``metadata: {mlflow: {artifact_path: <folder>}}`` has the file
      it just saved (in its version folder) logged as an artefact. kedro-mlflow's
      ``MlflowArtifactDataset`` wrapper is not used for versioned files: under Kedro 1.x
      its inner dataset gets a save version of its own, which the catalog refuses.
    - After training, the run is tagged with the model name, the data's content
      fingerprint and the Kedro version of ``model_input`` it was trained on; after
      embedding, the info record and the run get the versions of the checkpoint and data.
    """

    def __init__(self) -> None:
        self._catalog = None

    @hook_impl
    def after_catalog_created(self, catalog) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node) -> None:
        dataset = self._dataset(dataset_name)
        metadata = getattr(dataset, "metadata", None) or {}
        artifact_path = (metadata.get("mlflow") or {}).get("artifact_path")
        run = mlflow.active_run()
        if artifact_path is None or run is None:
            return
        mlflow.MlflowClient().log_artifact(
            run.info.run_id, saved_file(dataset), artifact_path=artifact_path
        )

    @hook_impl
    def after_node_run(self, node, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        # Runs after the node returns and before its outputs are saved, so the info record
        # written beside the embedding carries the versions too.
        if "embedding_info" in outputs:
            outputs["embedding_info"]["versions"] = {
                "model": self._load_version("model"),
                "model_input": self._load_version("model_input"),
            }
            self._tag_run(
                {
                    "embedding.model_version": self._load_version("model"),
                    "embedding.data_fingerprint": outputs["embedding_info"]["data"]["fingerprint"],
                }
            )
        summary = outputs.get("training_summary")
        if summary is not None:
            self._tag_run(
                {
                    "model_name": summary["model"],
                    "data_fingerprint": summary["data_fingerprint"],
                    "data_version": self._load_version("model_input"),
                }
            )

    @staticmethod
    def _tag_run(tags: dict[str, str | None]) -> None:
        if mlflow.active_run() is not None:
            mlflow.set_tags({key: value for key, value in tags.items() if value})

    def _dataset(self, dataset_name: str):
        if self._catalog is None or dataset_name not in self._catalog:
            return None
        return self._catalog.get(dataset_name)

    def _load_version(self, dataset_name: str) -> str | None:
        dataset = self._dataset(dataset_name)
        if isinstance(dataset, AbstractVersionedDataset) and dataset._version is not None:
            try:
                return dataset.resolve_load_version()
            except Exception:
                logger.warning("Could not resolve the load version of %s", dataset_name)
        return None


def saved_file(dataset) -> str:
    """Local path of the file a dataset has just saved (its version's file if versioned)."""
    if isinstance(dataset, AbstractVersionedDataset) and dataset._version is not None:
        return str(dataset._get_versioned_path(dataset.resolve_save_version()))
    return str(dataset._filepath)
