"""Project hooks: parameter validation, MLflow artefact logging, sweep child runs and
embedding with a registered model."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
from typing import Any

import mlflow
import torch
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset, MemoryDataset, SharedMemoryDataset
from kedro_mlflow.framework.hooks.utils import _flatten_dict
from mlflow.entities import RunStatus

from omics_vae.datasets import RegisteredModelDataset
from omics_vae.params import InvalidParametersError, validate_parameters
from omics_vae.schemas import PARAMETER_SCHEMAS
from omics_vae.sweeps import use_config_loader

logger = logging.getLogger(__name__)


class ParameterValidationHooks:
    """Checks every parameter block against its schema before any node runs."""

    @hook_impl
    def after_context_created(self, context) -> None:
        validate_parameters(context.params, PARAMETER_SCHEMAS)


class RegisteredModelHooks:
    """Serves ``embedding.model_uri`` as the catalog's ``model`` and ``model_card``.

    With ``--params embedding.model_uri=models:/invae@champion`` both entries become
    read-only ``RegisteredModelDataset``s on that version in the MLflow store, so the
    embedding pipeline, which declares ``model`` and ``model_card`` as its inputs, runs
    where no local checkpoint exists (a fresh clone sharing only the store) and reads
    nothing from ``data/06_models``. kedro-viz given the same ``--params`` shows the
    registered dataset. A run that would also train ``model`` is refused before it starts:
    it would embed with a model other than the one it trained.
    """

    @hook_impl
    def after_catalog_created(self, catalog, parameters: dict[str, Any]) -> None:
        uri = parameters.get("params:embedding.model_uri")
        if uri is None or "model" not in catalog:
            return
        for name, part in (("model", "model"), ("model_card", "card")):
            metadata = getattr(catalog.get(name), "metadata", None)
            catalog[name] = RegisteredModelDataset(model_uri=uri, part=part, metadata=metadata)

    @hook_impl
    def before_pipeline_run(self, pipeline, catalog) -> None:
        registered = catalog.get("model") if "model" in catalog else None
        if isinstance(registered, RegisteredModelDataset) and "model" in pipeline.all_outputs():
            raise InvalidParametersError(
                f"embedding.model_uri={registered.model_uri} embeds with a registered model, "
                "but this run also trains `model`. Run the embedding on its own "
                "(kedro run --pipeline embedding --params embedding.model_uri=...), or "
                "train without embedding.model_uri."
            )


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
        # written beside the embedding carries the versions too. In a sweep the datasets
        # carry the variant's namespace: `<variant>.model`.
        prefix = f"{node.namespace}." if node.namespace else ""
        for family_prefix in ("", "paired_"):
            info = outputs.get(f"{prefix}{family_prefix}embedding_info")
            if info is not None:
                self._stamp_versions(info, f"{prefix}{family_prefix}model", family_prefix)
            summary = outputs.get(f"{prefix}{family_prefix}training_summary")
            if summary is not None:
                self._tag_training_run(summary, family_prefix)

    def _stamp_versions(self, info: dict[str, Any], model: str, family_prefix: str) -> None:
        model_input = f"{family_prefix}model_input"
        info["versions"] = {
            "model": self._load_version(model),
            "model_input": self._load_version(model_input),
        }
        self._tag_run(
            {
                "embedding.model_version": info["versions"]["model"],
                "embedding.data_fingerprint": info["data"]["fingerprint"],
            }
        )

    def _tag_training_run(self, summary: dict[str, Any], family_prefix: str) -> None:
        tags = {
            "model_name": summary["model"],
            "data_fingerprint": summary["data_fingerprint"],
            "data_version": self._load_version(f"{family_prefix}model_input"),
            "training_fingerprint": summary.get("training_fingerprint"),
            "reused_from_run": summary.get("reused_from_run"),
        }
        # One tag per training phase: where it started and ended, and why it ended.
        for phase in summary.get("phases") or []:
            tags[f"phase.{phase['index']}.{phase['phase']}"] = (
                f"epochs {phase['start_epoch']}-{phase['end_epoch']}: {phase['reason']}"
            )
        self._tag_run(tags)

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


class ParallelRunnerHooks:
    """Lets ``--runner ParallelRunner`` pass the catalog's declared in-memory datasets.

    The catalog declares some ``MemoryDataset`` entries to pass AnnData objects by
    reference in one process; under ParallelRunner each worker would hold its own empty
    copy. Before a parallel run they become shared datasets, which the runner backs by
    its multiprocessing manager.
    """

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        if not _is_parallel(run_params):
            return
        for name in pipeline.datasets():
            if name.startswith("params:") or name == "parameters":
                continue
            if type(catalog.get(name)) is MemoryDataset:
                catalog[name] = SharedMemoryDataset()


def _is_parallel(run_params: dict[str, Any]) -> bool:
    return "ParallelRunner" in str(run_params.get("runner", ""))


class SweepRunHooks:
    """One MLflow run per sweep variant, a child of the ``kedro run``'s parent run.

    The child runs are created when the pipeline starts, in the main process, so parallel
    workers share them: their ids travel in an environment variable. Before a variant's
    node runs, its child run becomes the active run until the node's outputs are saved;
    so metric datasets, logged files and models land in the variant's run under the same
    un-prefixed keys as a plain run (``val/loss``, ``scib/total``), and the parent keeps
    the data processing and the sweep comparison.
    """

    CHILD_RUNS_ENV = "OMICS_VAE_SWEEP_RUNS"
    PARENT_RUN_ENV = "OMICS_VAE_PARENT_RUN"
    THREADS_ENV = "OMICS_VAE_WORKER_THREADS"

    def __init__(self) -> None:
        self._pushed: dict[str, int] = {}
        self._failed: set[str] = set()

    @hook_impl
    def after_context_created(self, context) -> None:
        use_config_loader(context.config_loader)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        variants = _variant_blocks(pipeline, catalog)
        parent = mlflow.active_run()
        if not variants or parent is None:
            return
        client = mlflow.MlflowClient()
        child_runs = {}
        for name, block in variants.items():
            child_runs[name] = _create_child_run(client, parent, name, block, catalog)
        os.environ[self.CHILD_RUNS_ENV] = json.dumps(child_runs)
        os.environ[self.PARENT_RUN_ENV] = parent.info.run_id
        # Parallel workers inherit the store's address, whatever set it in this process.
        os.environ["MLFLOW_TRACKING_URI"] = mlflow.get_tracking_uri()
        if _is_parallel(run_params):
            workers = min(len(variants), os.cpu_count() or 1)
            os.environ[self.THREADS_ENV] = str(max(1, (os.cpu_count() or 1) // workers))
        mlflow.set_tags({"sweep.variants": len(variants)})

    @hook_impl
    def before_node_run(self, node) -> None:
        in_worker = multiprocessing.parent_process() is not None
        if in_worker and os.environ.get(self.THREADS_ENV):
            torch.set_num_threads(int(os.environ[self.THREADS_ENV]))
        run_id = self._run_for(node, in_worker)
        active = mlflow.active_run()
        if run_id is None or (active is not None and active.info.run_id == run_id):
            return
        mlflow.start_run(run_id=run_id, nested=active is not None)
        self._pushed[node.name] = len(node.outputs)
        if not node.outputs:
            self._end(node.name, RunStatus.FINISHED)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, node) -> None:
        if node.name not in self._pushed:
            return
        self._pushed[node.name] -= 1
        if self._pushed[node.name] <= 0:
            self._end(node.name, RunStatus.FINISHED)

    @hook_impl
    def on_node_error(self, node) -> None:
        variant = self._variant_of(node)
        if variant is not None:
            self._failed.add(variant)
        if node.name in self._pushed:
            self._end(node.name, RunStatus.FAILED)

    @hook_impl
    def after_pipeline_run(self) -> None:
        self._close_child_runs(RunStatus.FINISHED)

    @hook_impl
    def on_pipeline_error(self) -> None:
        self._close_child_runs(RunStatus.FAILED)

    def _run_for(self, node, in_worker: bool) -> str | None:
        variant = self._variant_of(node)
        if variant is not None:
            return self._child_runs()[variant]
        # A worker process starts with no active run: the parent's nodes log to the parent.
        return os.environ.get(self.PARENT_RUN_ENV) if in_worker else None

    def _variant_of(self, node) -> str | None:
        if not node.namespace:
            return None
        variant = node.namespace.split(".")[0]
        return variant if variant in self._child_runs() else None

    def _child_runs(self) -> dict[str, str]:
        return json.loads(os.environ.get(self.CHILD_RUNS_ENV, "{}"))

    def _end(self, node_name: str, status: int) -> None:
        del self._pushed[node_name]
        mlflow.end_run(RunStatus.to_string(status))

    def _close_child_runs(self, status: int) -> None:
        child_runs = self._child_runs()
        if not child_runs:
            return
        client = mlflow.MlflowClient()
        for variant, run_id in child_runs.items():
            final = RunStatus.FAILED if variant in self._failed else status
            client.set_terminated(run_id, RunStatus.to_string(final))
        for name in (self.CHILD_RUNS_ENV, self.PARENT_RUN_ENV, self.THREADS_ENV):
            os.environ.pop(name, None)


def _variant_blocks(pipeline, catalog) -> dict[str, dict[str, Any]]:
    """The sweep variants among the pipeline's namespaces, with their parameter blocks."""
    blocks = {}
    for node in pipeline.nodes:
        variant = node.namespace.split(".")[0] if node.namespace else None
        if variant and variant not in blocks and f"params:{variant}.sweep" in catalog:
            blocks[variant] = catalog.load(f"params:{variant}")
    return blocks


def _create_child_run(client, parent, variant: str, block: dict[str, Any], catalog) -> str:
    sweep = block["sweep"]
    run = client.create_run(
        parent.info.experiment_id,
        run_name=variant,
        tags={
            "mlflow.parentRunId": parent.info.run_id,
            "sweep": sweep["name"],
            "sweep.variant": variant,
            "sweep.group": sweep["group"],
            "sweep.seed": str(sweep["seed"]),
            **{f"sweep.override.{k}": str(v) for k, v in sweep["overrides"].items()},
        },
    )
    # The keys a plain run logs for its parameter blocks, so Compare lines them up.
    sections = {key: value for key, value in block.items() if key != "sweep"}
    params = _flatten_dict(sections, recursive=True, sep=".")
    if "params:force_retrain" in catalog:
        params["force_retrain"] = catalog.load("params:force_retrain")
    client.log_batch(
        run.info.run_id,
        params=[mlflow.entities.Param(key, str(value)[:6000]) for key, value in params.items()],
    )
    return run.info.run_id
