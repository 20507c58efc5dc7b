"""The MLflow store as the project's database of models.

Every `kedro run` that trains is an MLflow run: flattened parameters
(`training.model`, `training.hyperparameters.invae.n_latent_bio`, ...), tags
(`model_name`, `data_version`, `data_fingerprint`), metrics (`val/loss`, `scib/total`, ...)
and the checkpoint with its model card under the artefact folder `model/`. This module
finds those runs, loads their models and registers the chosen ones in MLflow's model
registry, with MLflow's own APIs only.

Typical use:

```python
from omics_vae import runs

table = runs.find_models("invae", hyperparameters={"n_latent_bio": 30}, sort_by="scib/total")
best = runs.load_model(table.run_id.iloc[0])
runs.register_model(table.run_id.iloc[0], alias="champion")
champion = runs.load_model("models:/invae@champion")
```

For the paired family, ``paired_predictions`` and ``imputation_table`` give the measured
and imputed values (joint VAE and baselines) that its evaluation compares.

Where the store is: the `tracking_uri` argument, else `MLFLOW_TRACKING_URI`, else the URI
set with `mlflow.set_tracking_uri` (kedro-mlflow sets it in a Kedro session), else the
project's `conf/<env>/mlflow.yml`. A relative sqlite path is taken from the Kedro
project's root, as `kedro run` means it, so notebooks in `notebooks/` find `mlflow.db`.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import mlflow
import pandas as pd
import yaml
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from omics_vae.errors import ProjectError
from omics_vae.params import validate_section
from omics_vae.run_records import absolute_sqlite_uri
from omics_vae.schemas.paired_evaluation import PairedEvaluationParams

if TYPE_CHECKING:
    from omics_vae.models.base import BaseVAE

EXPERIMENT_NAME = "omics_vae"
MODEL_ARTIFACT_DIR = "model"
CHECKPOINT_FILE = "model.ckpt"
MODEL_CARD_FILE = "model_card.yml"
DEFAULT_ALIAS = "champion"
# Run tags copied onto a registered version, so the registry alone tells its lineage.
LINEAGE_TAGS = ("model_name", "data_version", "data_fingerprint")
# Metrics copied onto a registered version (its quality at a glance in the registry UI).
REGISTERED_METRICS = ("scib/total", "scib/bio_conservation", "scib/batch_correction", "val/loss")
# The leading columns of find_models' table; the rest are MLflow's metrics./params./tags.
SUMMARY_COLUMNS = (
    "run_id",
    "run_name",
    "start_time",
    "model_name",
    "data_version",
    "data_fingerprint",
    "model_uri",
)

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


class ModelNotFoundError(ProjectError, LookupError):
    """No run, artefact or registered model answers the given identifier."""


# ---- where the store is -----------------------------------------------------------------


def tracking_uri(uri: str | None = None) -> str:
    """The tracking URI this module uses (see the module docstring for the order)."""
    if uri is None:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None and mlflow.tracking._tracking_service.utils.is_tracking_uri_set():
        uri = mlflow.get_tracking_uri()
    project_root = find_project_root()
    if uri is None and project_root is not None:
        uri = configured_tracking_uri(project_root)
    if uri is None:
        uri = mlflow.get_tracking_uri()
    return absolute_sqlite_uri(uri, project_root or Path.cwd())


def find_project_root(start: Path | None = None) -> Path | None:
    """The nearest folder at or above ``start`` whose pyproject.toml has ``[tool.kedro]``."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        pyproject = folder / "pyproject.toml"
        if pyproject.is_file() and "[tool.kedro]" in pyproject.read_text():
            return folder
    return None


def configured_tracking_uri(project_root: Path, env: str | None = None) -> str | None:
    """``server.mlflow_tracking_uri`` of the project's mlflow.yml (base, then env/local)."""
    uri = None
    for environment in ("base", env or os.environ.get("KEDRO_ENV") or "local"):
        path = project_root / "conf" / environment / "mlflow.yml"
        if path.is_file():
            server = (yaml.safe_load(path.read_text()) or {}).get("server") or {}
            uri = server.get("mlflow_tracking_uri", uri)
    return uri


def client(uri: str | None = None) -> MlflowClient:
    """An MlflowClient on the project's store, its registry in the same store."""
    resolved = tracking_uri(uri)
    return MlflowClient(tracking_uri=resolved, registry_uri=resolved)


# ---- finding models ---------------------------------------------------------------------


def find_models(
    model: str | None = None,
    *,
    hyperparameters: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    data_version: str | None = None,
    data_fingerprint: str | None = None,
    sort_by: str | None = "scib/total",
    ascending: bool = False,
    experiment: str = EXPERIMENT_NAME,
    max_results: int = 1000,
    tracking_uri: str | None = None,
) -> pd.DataFrame:
    """Runs that trained a model, filtered on what made them and sorted by a metric.

    Args:
        model: Registry name of the model (``"invae"``, ``"scvi_vae"``); None for all.
        hyperparameters: The chosen model's hyperparameters by short name, e.g.
            ``{"n_latent_bio": 30}`` for ``training.hyperparameters.invae.n_latent_bio``;
            needs ``model``.
        params: Any logged parameters by their full dotted key, e.g.
            ``{"training.seed": 0}``.
        data_version: The Kedro version of ``model_input`` the model was trained on.
        data_fingerprint: The content hash of that data (equal across re-processings
            that produced the same cells).
        sort_by: A metric key to sort by (``"scib/total"``, ``"val/loss"``); runs
            without it come last. None keeps MLflow's order (newest first).
        ascending: Sort smallest first (e.g. for ``val/loss``).
        experiment: The MLflow experiment's name.
        max_results: At most this many runs.
        tracking_uri: The store; None finds it as the module docstring says.

    Returns:
        One row per run: ``run_id``, ``run_name``, ``start_time``, ``model_name``,
        ``data_version``, ``data_fingerprint``, ``model_uri`` (what ``load_model``
        takes), then MLflow's ``metrics.<key>``, ``params.<key>`` and ``tags.<key>``
        columns. Empty (with those leading columns) when nothing matches.
    """
    store = client(tracking_uri)
    found = store.get_experiment_by_name(experiment)
    if found is None:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS))
    filters = run_filters(model, hyperparameters, params, data_version, data_fingerprint)
    order_by = [f"metrics.`{sort_by}` {'ASC' if ascending else 'DESC'}"] if sort_by else None
    runs = store.search_runs(
        [found.experiment_id],
        filter_string=" and ".join(filters),
        order_by=order_by,
        max_results=max_results,
    )
    return runs_table(runs)


def run_filters(
    model: str | None,
    hyperparameters: Mapping[str, Any] | None,
    params: Mapping[str, Any] | None,
    data_version: str | None,
    data_fingerprint: str | None,
) -> list[str]:
    """MLflow search clauses; a run without a ``model_name`` tag trained nothing."""
    if hyperparameters and not model:
        raise ValueError("hyperparameters are named per model: pass model='invae' (or another).")
    clauses = [f"tags.model_name = {_quoted(model)}" if model else "tags.model_name != ''"]
    wanted = {
        f"training.hyperparameters.{model}.{k}": v for k, v in (hyperparameters or {}).items()
    }
    wanted.update(params or {})
    clauses += [f"params.`{key}` = {_quoted(value)}" for key, value in wanted.items()]
    if data_version:
        clauses.append(f"tags.data_version = {_quoted(data_version)}")
    if data_fingerprint:
        clauses.append(f"tags.data_fingerprint = {_quoted(data_fingerprint)}")
    return clauses


def _quoted(value: Any) -> str:
    # MLflow stores parameters as str(value): 30 -> '30', True -> 'True', None -> 'None'.
    return "'" + str(value).replace("'", "\\'") + "'"


def runs_table(runs: list) -> pd.DataFrame:
    """MLflow runs as rows: summary columns first, then metrics, params and tags."""
    rows = []
    for run in runs:
        tags = run.data.tags
        row = {
            "run_id": run.info.run_id,
            "run_name": run.info.run_name,
            "start_time": pd.to_datetime(run.info.start_time, unit="ms"),
            "model_name": tags.get("model_name"),
            "data_version": tags.get("data_version"),
            "data_fingerprint": tags.get("data_fingerprint"),
            "model_uri": f"runs:/{run.info.run_id}/{MODEL_ARTIFACT_DIR}",
        }
        row.update({f"metrics.{k}": v for k, v in sorted(run.data.metrics.items())})
        row.update({f"params.{k}": v for k, v in sorted(run.data.params.items())})
        row.update({f"tags.{k}": v for k, v in sorted(tags.items())})
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else list(SUMMARY_COLUMNS))


# ---- loading models ---------------------------------------------------------------------


def load_model(run_or_uri: str, *, tracking_uri: str | None = None) -> BaseVAE:
    """The trained model of a run or of a registered version, in eval mode on the CPU.

    Args:
        run_or_uri: A run id, ``runs:/<run id>/model`` (as in ``find_models``'
            ``model_uri``), or a registered model ``models:/<name>@<alias>`` /
            ``models:/<name>/<version>``.
        tracking_uri: The store; None finds it as the module docstring says.

    Reads the checkpoint with ``models.checkpoints.load_model_file`` (tensors only,
    never pickled code), so it returns the model class its registry name says.
    """
    model, _ = load_model_and_card(run_or_uri, tracking_uri=tracking_uri)
    return model


def load_model_card(run_or_uri: str, *, tracking_uri: str | None = None) -> dict[str, Any]:
    """The model card (training parameters, data, scores) of a run or registered version."""
    _, card = load_model_and_card(run_or_uri, tracking_uri=tracking_uri)
    return card


def load_model_and_card(
    run_or_uri: str, *, tracking_uri: str | None = None
) -> tuple[BaseVAE, dict[str, Any]]:
    """Both the model and its card, downloaded once (see ``load_model``)."""
    store = client(tracking_uri)
    source = model_artifact_uri(run_or_uri, store)
    with tempfile.TemporaryDirectory(prefix="omics_vae_model_") as folder:
        try:
            local = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=source, dst_path=folder, tracking_uri=store.tracking_uri
                )
            )
        except (MlflowException, OSError) as exc:
            raise ModelNotFoundError(
                f"Cannot download the model of '{run_or_uri}' from {source}; only runs that "
                f"trained a model (the training pipeline) have one. ({exc})"
            ) from exc
        checkpoint = local / CHECKPOINT_FILE
        if not checkpoint.is_file():
            raise ModelNotFoundError(
                f"'{run_or_uri}' has no {CHECKPOINT_FILE} under {source}; only runs that "
                "trained a model (the training pipeline) have one."
            )
        # Imported here: the rest of this module (and the hooks that use it) needs no torch.
        from omics_vae.models.checkpoints import load_model_file  # noqa: PLC0415

        model = load_model_file(checkpoint, name=f"{source}/{CHECKPOINT_FILE}")
        card_path = local / MODEL_CARD_FILE
        card = yaml.safe_load(card_path.read_text()) if card_path.is_file() else {}
    return model, card


def model_artifact_uri(run_or_uri: str, store: MlflowClient) -> str:
    """The artefact folder holding the checkpoint and card of a run or registered version."""
    if run_or_uri.startswith("models:/"):
        name, version = registered_version(run_or_uri, store)
        return store.get_model_version_download_uri(name, version)
    if run_or_uri.startswith("runs:/"):
        run_id, _, path = run_or_uri[len("runs:/") :].partition("/")
        path = path.rstrip("/") or MODEL_ARTIFACT_DIR
        if path.endswith(CHECKPOINT_FILE):
            path = path[: -len(CHECKPOINT_FILE)].rstrip("/")
        return f"{run_artifact_uri(run_id, store)}/{path}"
    if _RUN_ID.match(run_or_uri):
        return f"{run_artifact_uri(run_or_uri, store)}/{MODEL_ARTIFACT_DIR}"
    raise ModelNotFoundError(
        f"'{run_or_uri}' is neither a run id, a runs:/ URI nor a models:/<name>@<alias> URI."
    )


def run_artifact_uri(run_id: str, store: MlflowClient) -> str:
    try:
        return store.get_run(run_id).info.artifact_uri
    except MlflowException as exc:
        raise ModelNotFoundError(f"No MLflow run {run_id} in {store.tracking_uri}.") from exc


def registered_version(models_uri: str, store: MlflowClient) -> tuple[str, str]:
    """(name, version) of ``models:/<name>@<alias>`` or ``models:/<name>/<version>``."""
    reference = models_uri[len("models:/") :]
    try:
        if "@" in reference:
            name, alias = reference.split("@", 1)
            return name, store.get_model_version_by_alias(name, alias).version
        name, version = reference.rsplit("/", 1)
        return name, store.get_model_version(name, version).version
    except (MlflowException, ValueError) as exc:
        raise ModelNotFoundError(
            f"No registered model version '{models_uri}' in {store.tracking_uri} "
            "(register one with omics_vae.runs.register_model)."
        ) from exc


# ---- registering models -----------------------------------------------------------------


def register_model(
    run_id: str,
    name: str | None = None,
    *,
    alias: str | None = DEFAULT_ALIAS,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    tracking_uri: str | None = None,
) -> ModelVersion:
    """Register a run's trained model as a new version in MLflow's model registry.

    Args:
        run_id: The run that trained the model (``find_models``' ``run_id``).
        name: The registered model's name; defaults to the model family (the run's
            ``model_name`` tag, e.g. ``invae``), one registered model per family.
        alias: Moved to the new version (``champion``: what ``models:/invae@champion``
            loads); None sets no alias.
        tags: Extra version tags; the run's lineage tags (``data_version``,
            ``data_fingerprint``, ``model_name``) and scores (``scib/total``, ...) are
            added, and ``logged_model_uri`` names the run's ``mlflow.pytorch`` model.
        description: The version's description.
        tracking_uri: The store; None finds it as the module docstring says.

    Returns:
        The new ``ModelVersion``; its files are the run's ``model/`` artefacts (the
        checkpoint and its card).
    """
    store = client(tracking_uri)
    try:
        run = store.get_run(run_id)
    except MlflowException as exc:
        raise ModelNotFoundError(f"No MLflow run {run_id} in {store.tracking_uri}.") from exc
    name = name or run.data.tags.get("model_name")
    if not name:
        raise ModelNotFoundError(
            f"Run {run_id} has no model_name tag: it trained no model. Pass a run that ran "
            "the training pipeline."
        )
    _ensure_registered_model(store, name)
    version = store.create_model_version(
        name,
        source=f"{run.info.artifact_uri}/{MODEL_ARTIFACT_DIR}",
        run_id=run_id,
        tags={**version_tags(run, store), **{k: str(v) for k, v in (tags or {}).items()}},
        description=description,
    )
    if alias:
        store.set_registered_model_alias(name, alias, version.version)
    return store.get_model_version(name, version.version)


def _ensure_registered_model(store: MlflowClient, name: str) -> None:
    try:
        store.get_registered_model(name)
    except MlflowException:
        store.create_registered_model(
            name, description=f"Trained '{name}' models of omics-vae, one version per run."
        )


def version_tags(run, store: MlflowClient) -> dict[str, str]:
    """Lineage and scores of a run, as tags of the version registered from it."""
    tags = {key: run.data.tags[key] for key in LINEAGE_TAGS if key in run.data.tags}
    tags.update({k: str(run.data.metrics[k]) for k in REGISTERED_METRICS if k in run.data.metrics})
    logged = store.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    if logged:
        tags["logged_model_uri"] = f"models:/{logged[0].model_id}"
    return tags


# ---- paired imputations -----------------------------------------------------------------


def paired_predictions(catalog, space: str = "original") -> dict[str, Any]:
    """Measured and imputed values on the paired evaluation split, for every method.

    The paired_evaluation pipeline keeps these in memory (``paired_predictions``); this
    recomputes them from the catalog's ``paired_model_input``, ``paired_imputed`` and
    ``paired_scalers`` (latest versions, or those the catalog was made with) and its
    ``paired.evaluation`` parameters, in ``space``: the joint VAE's imputations and the
    baselines (ridge, k-NN, mean, permuted control) refitted as the pipeline fits them.

    Args:
        catalog: A Kedro catalog (the ``catalog`` of ``kedro jupyter``/``kedro ipython``).
        space: ``original`` (the input's units: scaling and log undone) or
            ``transformed`` (after the log transform).

    Returns:
        ``{"space", "split", "directions"}``; each direction has ``name``
        (``<source>_to_<target>``), ``features``, ``samples``, ``measured`` and
        ``predicted`` (``{method: samples x features array}``).
    """
    block = validate_section(
        "paired.evaluation", PairedEvaluationParams, catalog.load("params:paired.evaluation")
    )
    params = validate_section(
        "paired.evaluation", PairedEvaluationParams, {**block.model_dump(), "space": space}
    )
    from omics_vae.evaluation.imputation import predict_held_out  # noqa: PLC0415

    return predict_held_out(
        catalog.load("paired_model_input"),
        catalog.load("paired_imputed"),
        catalog.load("paired_scalers"),
        params,
    )


def imputation_table(
    predictions: dict[str, Any], direction: str, features: list[str]
) -> pd.DataFrame:
    """One row per sample, feature and method: ``measured`` and ``imputed`` values.

    Args:
        predictions: ``paired_predictions``' result.
        direction: A direction's name, e.g. ``rna_to_protein``.
        features: Feature names of the direction's target platform.
    """
    found = {item["name"]: item for item in predictions["directions"]}
    if direction not in found:
        raise KeyError(f"No direction '{direction}'; the directions are {sorted(found)}.")
    chosen = found[direction]
    columns = [chosen["features"].index(feature) for feature in features]
    rows = [
        pd.DataFrame(
            {
                "sample_id": chosen["samples"],
                "feature": chosen["features"][column],
                "method": method,
                "measured": chosen["measured"][:, column],
                "imputed": imputed[:, column],
            }
        )
        for method, imputed in chosen["predicted"].items()
        for column in columns
    ]
    return pd.concat(rows, ignore_index=True)


__all__ = [
    "ModelNotFoundError",
    "find_models",
    "imputation_table",
    "load_model",
    "load_model_and_card",
    "load_model_card",
    "paired_predictions",
    "register_model",
    "tracking_uri",
]
