"""Project hooks: parameter validation, MLflow artefact logging, sweep child runs and
embedding with a registered model."""

from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path, PurePosixPath
from typing import Any

import mlflow
from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl
from kedro.io import AbstractVersionedDataset, MemoryDataset, SharedMemoryDataset
from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook
from kedro_mlflow.framework.hooks.utils import _flatten_dict
from mlflow.entities import RunStatus
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
from pydantic import BaseModel

from omics_vae.datasets.registered_model_dataset import RegisteredModelDataset
from omics_vae.errors import TrainingDryRun
from omics_vae.families import FAMILIES, training_family
from omics_vae.params import InvalidParametersError, validate_section
from omics_vae.run_records import (
    SET_ASIDE_SUFFIX,
    absolute_sqlite_uri,
    close_runs_of_ended_processes,
    incomplete_groups,
    process_tags,
    set_aside,
    sqlite_store_lock,
    variant_fingerprint,
)
from omics_vae.run_summary import RunFacts, format_run_summary
from omics_vae.schemas.experiment import ExperimentDescription
from omics_vae.schemas.training import plan_table
from omics_vae.sweeps import use_config_loader

logger = logging.getLogger(__name__)

VARIANT_FINGERPRINT_TAG = "sweep.variant_fingerprint"
VARIANT_STAGES_TAG = "sweep.variant_stages"


class ParameterValidationHooks:
    """Validates every parameter block (``ProjectContext.params``) as soon as the context
    exists, so a typo fails in the first seconds: before any pipeline is loaded, and
    before kedro-mlflow opens the tracking store (``tryfirst``; that takes longer than
    everything else a refusal needs)."""

    @hook_impl(tryfirst=True)
    def after_context_created(self, context) -> None:
        context.params  # noqa: B018 - the property validates, once, and keeps the result


class ProjectMlflowHook(MlflowHook):
    """kedro-mlflow's hook, replacing the plugin's own instance
    (``DISABLE_HOOKS_FOR_PLUGINS``), with two changes:

    - a node's validated parameter objects are logged under the same dotted keys as the
      dictionaries they were read from (kedro-mlflow flattens only dictionaries);
    - a node's parameters are logged in one batch, and only those the active run does
      not have yet (kedro-mlflow logs each value in its own transaction, before every
      node: 130 sqlite writes for the six data_processing nodes that share one block);
    - a failed run's MLflow runs end with the error's ``mlflow_status`` (``KILLED`` for
      training stopped by a signal, else ``FAILED``), also when no run is active in this
      thread (where kedro-mlflow 2's own handler raises ``UnboundLocalError``).
    """

    def __init__(self) -> None:
        super().__init__()
        self._params_of_runs: dict[str, set[str]] = {}
        self._pending_params: dict[str, Any] = {}

    @hook_impl
    def after_context_created(self, context) -> None:
        # Opening the store creates a new sqlite store's tables: one process at a time.
        try:
            server = context.config_loader["mlflow"].get("server") or {}
        except MissingConfigException:
            server = {}
        uri = absolute_sqlite_uri(server.get("mlflow_tracking_uri") or "", context.project_path)
        with sqlite_store_lock(uri):
            super().after_context_created(context)

    @hook_impl
    def before_node_run(self, node, catalog, inputs: dict[str, Any], is_async: bool) -> None:
        self._pending_params = {}
        super().before_node_run(node, catalog, loggable(inputs), is_async)
        active = mlflow.active_run()
        if active is None or not self._pending_params:
            return
        logged = self._params_of_runs.setdefault(active.info.run_id, set())
        new = {key: v for key, v in self._pending_params.items() if key not in logged}
        if new:
            mlflow.log_params(new)
            logged.update(new)

    def _log_param(self, name: str, value: Any) -> None:
        # Called by kedro-mlflow's before_node_run for each parameter: values MLflow
        # accepts as they are wait for the batch; longer ones follow kedro-mlflow's
        # long_params_strategy.
        if len(str(value)) <= MAX_PARAM_VAL_LENGTH:
            self._pending_params[name] = value
        else:
            super()._log_param(name, value)

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params, pipeline, catalog) -> None:
        if not self._is_mlflow_enabled or self._already_active_mlflow:
            super().on_pipeline_error(error, run_params, pipeline, catalog)
            return
        status = run_status_of(error)
        closed = set()
        while mlflow.active_run():
            closed.add(mlflow.active_run().info.run_id)
            mlflow.end_run(status)
        if self.run_id is not None and self.run_id not in closed:
            mlflow.MlflowClient().set_terminated(self.run_id, status)
        logger.info("The MLflow run %s ended as %s: %s", self.run_id, status, error)


def run_status_of(error: BaseException) -> str:
    """How the MLflow runs of a failed pipeline end: the error's own ``mlflow_status``
    (``KILLED`` for training stopped by a signal), else ``FAILED``."""
    return getattr(error, "mlflow_status", RunStatus.to_string(RunStatus.FAILED))


def loggable(value: Any) -> Any:
    """``value`` with every pydantic object inside it turned into its dictionary."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    if isinstance(value, dict):
        return {key: loggable(item) for key, item in value.items()}
    return value


class DryRunHooks:
    """``training.dry_run`` (or ``paired.training.dry_run``, or a sweep variant's): print
    the plan of every training the run would do, and stop before anything is processed,
    tracked or written. Called before kedro-mlflow opens the run (``tryfirst``)."""

    @hook_impl(tryfirst=True)
    def before_pipeline_run(self, pipeline, catalog) -> None:
        tables = {}
        for section in sorted(_training_sections(pipeline)):
            block = catalog.load(f"params:{section}")
            if block.dry_run:
                tables[section] = plan_table(block, section)
        if not tables:
            return
        for section, table in tables.items():
            print(f"{table}\n{section}.dry_run: the plan above is valid; nothing was trained.")
        print("Dry run: nothing was processed, trained, tracked or written.")
        raise TrainingDryRun()


def _training_sections(pipeline) -> set[str]:
    """The training parameter blocks the pipeline's nodes read (``training``,
    ``paired.training``, ``<variant>.training`` ...)."""
    sections = {name.removeprefix("params:") for name in pipeline.inputs()}
    return {name for name in sections if training_family(name) is not None}


class RunIntegrityHooks:
    """What a run that does not finish leaves behind stays out of the way.

    - Each MLflow run records the process that owns it; a run's start closes (KILLED) the
      runs of this host whose process ended without closing them (``kill -9``).
    - When a run fails, each stage (nodes of one namespace with the same tags) that saved
      some but not all of its versioned outputs has those set aside, so the latest
      versions of every dataset still come from stages that finished.
    """

    def __init__(self) -> None:
        self._saved: dict[str, Path] = {}
        self._catalog = None

    @hook_impl
    def before_pipeline_run(self, catalog) -> None:
        self._saved, self._catalog = {}, catalog
        if mlflow.active_run() is None:
            return
        close_runs_of_ended_processes(mlflow.MlflowClient())
        mlflow.set_tags(process_tags())

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        dataset = self._catalog.get(dataset_name) if self._catalog is not None else None
        path = saved_file(self._catalog, dataset_name) if dataset is not None else None
        if isinstance(dataset, AbstractVersionedDataset) and path is not None:
            self._saved[dataset_name] = Path(path)

    @hook_impl
    def on_pipeline_error(self, pipeline, catalog) -> None:
        expected: dict[tuple[str | None, frozenset[str]], set[str]] = {}
        for node in pipeline.nodes:
            outputs = expected.setdefault((node.namespace, frozenset(node.tags)), set())
            outputs.update(
                name
                for name in node.outputs
                if isinstance(catalog.get(name), AbstractVersionedDataset)
            )
        incomplete = incomplete_groups(expected, self._saved)
        names = [name for group in incomplete.values() for name in group]
        moved = set_aside(self._saved[name] for name in names)
        if moved:
            logger.warning(
                "The run failed part-way through a stage: set aside the outputs it had saved "
                "(%s), so that the latest versions stay a finished set. The files are kept, "
                "renamed with the suffix %s.",
                ", ".join(names),
                SET_ASIDE_SUFFIX,
            )


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
                "(kedro run --pipelines embedding --params embedding.model_uri=...), or "
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
        path = saved_file(self._catalog, dataset_name) if artifact_path else None
        if path is None or run is None:
            return
        mlflow.MlflowClient().log_artifact(run.info.run_id, path, artifact_path=artifact_path)

    @hook_impl
    def after_node_run(self, node, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        # Runs after the node returns and before its outputs are saved, so the info record
        # written beside the embedding carries the versions too. In a sweep the datasets
        # carry the variant's namespace: `<variant>.model`.
        if node.namespace and self._in_sweep_parent():
            return  # a variant not tracked again (SweepRunHooks): its lineage is elsewhere
        prefix = f"{node.namespace}." if node.namespace else ""
        for family_prefix in (family.prefix for family in FAMILIES.values()):
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
    def _in_sweep_parent() -> bool:
        run = mlflow.active_run()
        return run is not None and "sweep.variants" in mlflow.get_run(run.info.run_id).data.tags

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
        if isinstance(dataset, AbstractVersionedDataset):
            try:
                return dataset.resolve_load_version()
            except Exception:
                logger.warning("Could not resolve the load version of %s", dataset_name)
        return None


def saved_file(catalog, dataset_name: str) -> str | None:
    """Local path of the file a dataset has just saved: its ``filepath`` in the catalog's
    configuration, inside its save version's folder if versioned (Kedro's documented
    layout ``<filepath>/<version>/<file name>``); ``None`` for a dataset without a file
    (an MLflow model, a metrics history)."""
    resolver = catalog.config_resolver
    config = resolver.config.get(dataset_name) or resolver.resolve_pattern(dataset_name)
    if "filepath" not in config:
        return None
    filepath = PurePosixPath(config["filepath"])
    dataset = catalog.get(dataset_name)
    version = (
        dataset.resolve_save_version() if isinstance(dataset, AbstractVersionedDataset) else None
    )
    return str(filepath / version / filepath.name) if version else str(filepath)


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

    While a variant's node runs, its child run is the active run until the node's outputs
    are saved; so metric datasets, logged files and models land in the variant's run under
    the same un-prefixed keys as a plain run (``val/loss``, ``scib/total``), and the parent
    keeps the data processing and the sweep comparison.

    Run sequentially, a variant's child run is created when its first node (training) has
    run: if a finished child run of the same variant already holds results for the same
    trained model and parameters (its ``sweep.variant_fingerprint``), the variant is not
    tracked or saved again: its outputs stay in memory for the comparison, and the parent
    run names the earlier run (``sweep.reused.<variant>``). Under ParallelRunner the child
    runs are created when the pipeline starts, in the main process, so that workers share
    them, and are never skipped: the runs' ids, the tracking store and the workers' torch
    thread count travel to the workers in the catalog, as the in-memory dataset
    ``SWEEP_TRACKING`` that each worker's hook reads before its node runs.
    """

    SWEEP_TRACKING = "sweep_tracking"

    def __init__(self) -> None:
        self._pushed: dict[str, int] = {}
        self._failed: set[str] = set()
        self._blocks: dict[str, dict[str, Any]] = {}
        self._stages: dict[str, set[str]] = {}
        self._replayed: set[str] = set()
        self._pipeline = None
        self._catalog = None
        self._parent: str | None = None
        self._children: dict[str, str] = {}

    @hook_impl
    def after_context_created(self, context) -> None:
        use_config_loader(context.config_loader)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        self._blocks = _variant_blocks(pipeline, catalog)
        self._pipeline, self._catalog, self._replayed = pipeline, catalog, set()
        self._stages = {variant: set() for variant in self._blocks}
        for node in pipeline.nodes:
            if self._variant_of(node) is not None:
                self._stages[self._variant_of(node)].update(node.tags)
        parent = mlflow.active_run()
        self._parent, self._children = None, {}
        if not self._blocks or parent is None:
            return
        self._parent = parent.info.run_id
        mlflow.set_tags({"sweep.variants": len(self._blocks)})
        if not _is_parallel(run_params):
            return
        for name in self._blocks:
            self._create_child_run(name)
        workers = min(len(self._blocks), os.cpu_count() or 1)
        catalog[self.SWEEP_TRACKING] = MemoryDataset(
            {
                "parent": self._parent,
                "children": dict(self._children),
                # Workers reach the store this process uses, whatever set it here.
                "tracking_uri": mlflow.get_tracking_uri(),
                "threads": max(1, (os.cpu_count() or 1) // workers),
            }
        )

    @hook_impl
    def before_node_run(self, node, catalog) -> None:
        in_worker = multiprocessing.parent_process() is not None
        if in_worker and self.SWEEP_TRACKING in catalog:
            tracking = catalog.load(self.SWEEP_TRACKING)
            self._parent, self._children = tracking["parent"], tracking["children"]
            mlflow.set_tracking_uri(tracking["tracking_uri"])
            import torch  # noqa: PLC0415  (a worker about to train; start-up stays torch-free)

            torch.set_num_threads(tracking["threads"])
        self._activate(node, self._run_for(node, in_worker))

    @hook_impl(tryfirst=True)
    def after_node_run(self, node, outputs: dict[str, Any]) -> None:
        # Before the outputs are saved, and before MlflowLineageHooks tags the active run.
        variant = self._variant_of(node)
        if variant is None or variant in self._children or variant in self._replayed:
            return
        variant_fingerprint = self._variant_fingerprint(variant, outputs)
        earlier = self._finished_run_with(variant, variant_fingerprint)
        if earlier is not None:
            self._replay(variant, earlier)
            return
        self._activate(node, self._create_child_run(variant, variant_fingerprint))

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
    def on_pipeline_error(self, error: Exception) -> None:
        self._close_child_runs(RunStatus.from_string(run_status_of(error)))

    def _activate(self, node, run_id: str | None) -> None:
        active = mlflow.active_run()
        if run_id is None or (active is not None and active.info.run_id == run_id):
            return
        mlflow.start_run(run_id=run_id, nested=active is not None)
        self._pushed[node.name] = len(node.outputs)
        if not node.outputs:
            self._end(node.name, RunStatus.FINISHED)

    def _run_for(self, node, in_worker: bool) -> str | None:
        variant = self._variant_of(node)
        if variant is not None:
            return self._children.get(variant)
        # A worker process starts with no active run: the parent's nodes log to the parent.
        return self._parent if in_worker else None

    def _variant_of(self, node) -> str | None:
        if not node.namespace:
            return None
        variant = node.namespace.split(".")[0]
        known = variant in self._blocks or variant in self._children
        return variant if known else None

    def _create_child_run(self, variant: str, variant_fingerprint: str | None = None) -> str:
        parent = mlflow.MlflowClient().get_run(self._parent)
        run_id = _create_child_run(
            mlflow.MlflowClient(), parent, variant, self._blocks[variant], self._catalog
        )
        if variant_fingerprint is not None:
            client = mlflow.MlflowClient()
            client.set_tag(run_id, VARIANT_FINGERPRINT_TAG, variant_fingerprint)
            client.set_tag(run_id, VARIANT_STAGES_TAG, ",".join(sorted(self._stages[variant])))
        self._children[variant] = run_id
        return run_id

    def _variant_fingerprint(self, variant: str, outputs: dict[str, Any]) -> str | None:
        """From the training summary among a variant's first outputs, if any."""
        summaries = [
            value
            for value in outputs.values()
            if isinstance(value, dict) and value.get("training_fingerprint")
        ]
        if len(summaries) != 1:
            return None
        block = {k: loggable(v) for k, v in self._blocks[variant].items() if k != "sweep"}
        return variant_fingerprint(summaries[0]["training_fingerprint"], block)

    def _finished_run_with(self, variant: str, fingerprint: str | None) -> str | None:
        forced = "params:force_retrain" in self._catalog and self._catalog.load(
            "params:force_retrain"
        )
        if fingerprint is None or forced:
            return None
        parent = mlflow.MlflowClient().get_run(self._parent)
        runs = mlflow.MlflowClient().search_runs(
            [parent.info.experiment_id],
            filter_string=(
                f"attributes.status = 'FINISHED' and tags.`sweep.variant` = '{variant}' "
                f"and tags.`{VARIANT_FINGERPRINT_TAG}` = '{fingerprint}'"
            ),
            order_by=["attributes.start_time DESC"],
        )
        # A run that did only some of the stages run now (--tags training) has not all
        # the results.
        for run in runs:
            stages = set(run.data.tags.get(VARIANT_STAGES_TAG, "").split(","))
            if self._stages[variant] <= stages:
                return run.info.run_id
        return None

    def _replay(self, variant: str, earlier_run: str) -> None:
        """Keep the variant's outputs in memory: they equal those of ``earlier_run``."""
        for node in self._pipeline.nodes:
            if self._variant_of(node) == variant:
                for name in node.outputs:
                    self._catalog[name] = MemoryDataset()
        self._replayed.add(variant)
        mlflow.set_tag(f"sweep.reused.{variant}", earlier_run)
        logger.info(
            "Sweep variant %s was already trained, embedded and evaluated with the same data "
            "and parameters (MLflow run %s): its results are recomputed in memory for the "
            "comparison, and nothing is tracked or saved again.",
            variant,
            earlier_run,
        )

    def _end(self, node_name: str, status: int) -> None:
        del self._pushed[node_name]
        mlflow.end_run(RunStatus.to_string(status))

    def _close_child_runs(self, status: int) -> None:
        child_runs, self._children, self._parent = self._children, {}, None
        client = mlflow.MlflowClient()
        for variant, run_id in child_runs.items():
            final = RunStatus.FAILED if variant in self._failed else status
            client.set_terminated(run_id, RunStatus.to_string(final))


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
            # Which experiment (ExperimentDescriptionHooks tagged the parent).
            **{k: v for k, v in parent.data.tags.items() if k.startswith("experiment.")},
            **process_tags(),
        },
    )
    # The keys a plain run logs for its parameter blocks, so Compare lines them up.
    sections = {key: loggable(value) for key, value in block.items() if key != "sweep"}
    params = _flatten_dict(sections, recursive=True, sep=".")
    if "params:force_retrain" in catalog:
        params["force_retrain"] = catalog.load("params:force_retrain")
    client.log_batch(
        run.info.run_id,
        params=[mlflow.entities.Param(key, str(value)[:6000]) for key, value in params.items()],
    )
    return run.info.run_id


class RunSummaryHooks:
    """Prints what a finished run made: trainings (or reuses), headline scores against
    the baselines, the files of the new versions and the MLflow run.

    The facts are read from the catalog once the run has ended, not gathered while it
    runs, so the summary is the same under every runner: a versioned dataset was saved
    by this run when its file exists at the run's save version.
    """

    def __init__(self) -> None:
        self._run_id: str | None = None
        self._experiment: str | None = None

    @hook_impl
    def before_pipeline_run(self) -> None:
        # ProjectMlflowHook (registered after this hook, so called before it) has
        # started the run; it ends it before this hook's after_pipeline_run.
        run = mlflow.active_run()
        self._run_id = run.info.run_id if run else None
        self._experiment = (
            mlflow.get_experiment(run.info.experiment_id).name if run is not None else None
        )

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        facts = RunFacts(
            pipelines=run_params.get("pipeline_names") or ["__default__"],
            mlflow_run_id=self._run_id,
            mlflow_experiment=self._experiment,
        )
        for name in sorted(pipeline.all_outputs()):
            path = _saved_by_this_run(catalog, name)
            if path is None:
                continue
            facts.versions.append((name, path))
            self._add_results(facts, name, catalog)
        print(format_run_summary(facts), flush=True)  # plain lines, not log records

    @staticmethod
    def _add_results(facts: RunFacts, name: str, catalog) -> None:
        namespace, _, base = name.rpartition(".")
        for family in FAMILIES.values():
            if base == family.training_summary:
                facts.trainings.append((namespace, catalog.load(name)))
            elif base == family.scores and not namespace:
                facts.headlines.append(family.headline(catalog.load(name)))
            elif base in family.more_headlines and not namespace:
                facts.headlines.append(family.more_headlines[base](catalog.load(name)))


def _saved_by_this_run(catalog, dataset_name: str) -> str | None:
    """The file of ``dataset_name``'s version saved by the current run, if it saved one."""
    if dataset_name not in catalog or not isinstance(
        catalog.get(dataset_name), AbstractVersionedDataset
    ):
        return None
    path = saved_file(catalog, dataset_name)
    if path is None or not Path(path).exists():
        return None
    file, here = Path(path).resolve(), Path.cwd().resolve()
    # As the user types it in the project folder.
    return file.relative_to(here).as_posix() if file.is_relative_to(here) else path


class ExperimentDescriptionHooks:
    """Puts ``conf/<env>/experiment.yml`` (``ExperimentDescription``) where readers look:
    the MLflow experiment's tags (its description, its kind, which sets the view the
    MLflow UI opens on), each run's tags, and the ``experiment`` entry of every model card
    and embedding info record the run writes."""

    RECORDS = ("model_card", "embedding_info")

    def __init__(self) -> None:
        self._description: ExperimentDescription | None = None
        self._name = "omics_vae"

    @hook_impl
    def after_context_created(self, context) -> None:
        # ProjectMlflowHook, registered after this hook, has read mlflow.yml by now.
        mlflow_config = getattr(context, "mlflow", None)
        if mlflow_config is not None:
            self._name = mlflow_config.tracking.experiment.name
        try:
            values = context.config_loader["experiment"]
        except MissingConfigException:
            values = {}
        self._description = validate_section(
            "experiment (conf/local/experiment.yml)", ExperimentDescription, values
        )

    @hook_impl
    def before_pipeline_run(self) -> None:
        run = mlflow.active_run()
        if run is None or self._description is None:
            return
        client = mlflow.MlflowClient()
        for key, value in self._description.experiment_tags().items():
            client.set_experiment_tag(run.info.experiment_id, key, value)
        mlflow.set_tags(self._description.run_tags(self._name))

    @hook_impl
    def after_node_run(self, outputs: dict[str, Any]) -> None:
        if self._description is None:
            return
        for name, value in outputs.items():
            if name.rpartition(".")[2].endswith(self.RECORDS) and isinstance(value, dict):
                value["experiment"] = self._description.record(self._name)
