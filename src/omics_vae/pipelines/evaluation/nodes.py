"""Nodes of the evaluation pipeline: how well an embedding removes batch effects and
keeps biology, where its latent dimensions put batch and cell type, and which cells
look anomalous.

Every node reads ``evaluation_cells``, built once by :func:`prepare_evaluation_cells`:
the evaluated cells' ``obs``, the model's latents and the baseline embeddings in
``obsm``, and in ``uns["evaluation"]`` what each key holds. The integration benchmark
and the UMAPs use a stratified subsample of at most ``max_cells`` cells (``obs``
column ``in_subsample``); the latent statistics and the anomaly scores use every
evaluated cell.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import fields
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scanpy.plotting.palettes import default_20, default_102
from scipy import stats
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors
from statsmodels.nonparametric.smoothers_lowess import lowess
from statsmodels.stats.multitest import multipletests

from omics_vae.params import validate_section
from omics_vae.schemas.evaluation import AnomalyParams, EvaluationParams

logger = logging.getLogger(__name__)

PARAMETERS_FILE = "conf/base/parameters_evaluation.yml"
RECORD_KEY = "evaluation"
SUBSAMPLE_COLUMN = "in_subsample"
RECONSTRUCTION_ERROR = "reconstruction_error"
LIBRARY_SIZE = "library_size"  # counts of the modelled genes, from model_input
COUNTS_LAYER = "counts"
MODEL, BASELINE = "model", "baseline"
PCA_KEY, HARMONY_KEY = "X_pca", "X_harmony"
BATCH, CELL_TYPE = "batch", "cell_type"
# The aggregate columns of scib-metrics' results, present in the table even when a
# metric family did not run, so every run's table has the same columns.
SCORE_COLUMNS = ("Batch correction", "Bio conservation", "Total")
DESCRIPTION_COLUMNS = ("embedding", "role", "supervised", "n_cells", "note")
# The row of scib-metrics' get_results() that names each column's metric family.
METRIC_TYPE_ROW = "Metric Type"
_REQUIRED_RECORD_KEYS = ("model", "latent_key", "batch_key")
_EXAMPLES = 5


class EvaluationInputError(ValueError):
    """The embeddings, the processed data or the parameters cannot be evaluated."""


# ---- preparation ------------------------------------------------------------------------


def prepare_evaluation_cells(
    embeddings: AnnData, model_input: AnnData, params: dict[str, Any]
) -> AnnData:
    """Checks that the embeddings belong to the processed data and adds the baselines.

    Args:
        embeddings: Output of the embedding pipeline: the cells' ``obs``, the model's
            latent(s) in ``obsm`` and ``uns["embedding"]`` naming them and the obs keys.
        model_input: The processed cells the embedding was made from (log-normalised
            expression of the highly variable genes in ``X``).
        params: The ``evaluation`` parameter block.

    Returns:
        The evaluated cells (the splits in ``params``) with ``obs`` from the embeddings
        plus ``in_subsample`` and ``library_size`` (counts of the modelled genes, when
        ``model_input`` has ``layers["counts"]``); ``obsm`` with the model's latent(s),
        the unintegrated PCA (``X_pca``) and, when harmonypy is installed and asked for,
        Harmony (``X_harmony``); ``uns["evaluation"]`` describing them. ``X`` is empty.

    Raises:
        EvaluationInputError: A key named in ``uns["embedding"]`` is missing, the cells
            differ from ``model_input``'s, or a requested split does not exist.
    """
    config = validate_section("evaluation", EvaluationParams, params)
    record = embedding_record(embeddings)
    positions = matching_positions(embeddings, model_input)
    selected = selected_cells(embeddings.obs, config.splits)

    obs = embeddings.obs.loc[selected].copy()
    if COUNTS_LAYER in model_input.layers:
        counts = model_input.layers[COUNTS_LAYER][positions[selected]]
        obs[LIBRARY_SIZE] = np.asarray(counts.sum(axis=1), dtype=np.float64).ravel()
    obsm = {record["latent_key"]: _finite(embeddings, record["latent_key"])[selected]}
    if record["technical_key"]:
        obsm[record["technical_key"]] = _finite(embeddings, record["technical_key"])[selected]
    obsm[PCA_KEY] = unintegrated_pca(model_input, positions[selected], config)
    embedding_keys = {record["model"]: record["latent_key"]}
    if config.baselines.pca:
        embedding_keys["pca"] = PCA_KEY
    if config.baselines.harmony:
        if importlib.util.find_spec("harmonypy") is None:
            logger.info("Harmony baseline skipped: harmonypy is not installed")
        else:
            obsm[HARMONY_KEY] = harmony(obsm[PCA_KEY], obs, record["batch_key"], config.seed)
            embedding_keys["harmony"] = HARMONY_KEY

    obs[SUBSAMPLE_COLUMN] = stratified_subsample(obs, record, config.max_cells, config.seed)
    cells = AnnData(np.zeros((len(obs), 0), dtype=np.float32), obs=obs, obsm=obsm)
    cells.uns[RECORD_KEY] = {
        **record,
        "embeddings": embedding_keys,
        "pre_integrated_key": PCA_KEY,
        "splits": config.splits,
    }
    logger.info(
        "Evaluating %s on %d cells (%s), %d of them in the benchmark subsample; embeddings: %s",
        record["model"],
        cells.n_obs,
        "splits " + ", ".join(config.splits) if config.splits else "all splits",
        int(obs[SUBSAMPLE_COLUMN].sum()),
        ", ".join(embedding_keys),
    )
    return cells


def embedding_record(embeddings: AnnData) -> dict[str, Any]:
    """``uns["embedding"]`` checked against the AnnData it describes."""
    record = dict(embeddings.uns.get("embedding") or {})
    missing = [key for key in _REQUIRED_RECORD_KEYS if not record.get(key)]
    if missing:
        raise EvaluationInputError(
            f"embeddings.uns['embedding'] lacks {missing} (it has {sorted(record)}). "
            "Make the embeddings with the embedding pipeline: kedro run --pipeline embedding."
        )
    record = {
        "model": str(record["model"]),
        "latent_key": str(record["latent_key"]),
        # h5ad files may hold "" where the writer had None.
        "technical_key": record.get("technical_key") or None,
        "batch_key": str(record["batch_key"]),
        "cell_type_key": record.get("cell_type_key") or None,
        "supervised": bool(record.get("supervised", False)),
    }
    for field in ("latent_key", "technical_key"):
        key = record[field]
        if key is not None and key not in embeddings.obsm:
            raise EvaluationInputError(
                f"uns['embedding']['{field}'] names obsm['{key}'], absent from the "
                f"embeddings (obsm keys: {sorted(embeddings.obsm)})."
            )
    for field in ("batch_key", "cell_type_key"):
        key = record[field]
        if key is not None and key not in embeddings.obs:
            raise EvaluationInputError(
                f"uns['embedding']['{field}'] names obs['{key}'], absent from the embeddings "
                f"(obs columns: {sorted(embeddings.obs.columns)}). Re-run the embedding "
                "pipeline on data processed with that key, or fix data_processing."
                f"{field} in conf/base/parameters_data_processing.yml."
            )
    return record


def matching_positions(embeddings: AnnData, model_input: AnnData) -> np.ndarray:
    """Row of each embedded cell in ``model_input``; the two must hold the same cells."""
    if embeddings.obs_names.equals(model_input.obs_names):
        return np.arange(model_input.n_obs)
    not_processed = embeddings.obs_names.difference(model_input.obs_names)
    not_embedded = model_input.obs_names.difference(embeddings.obs_names)
    if len(not_processed) or len(not_embedded):
        raise EvaluationInputError(
            f"The embeddings ({embeddings.n_obs} cells) belong to another version of the "
            f"processed data than model_input ({model_input.n_obs} cells): "
            f"{len(not_processed)} embedded cells are not in model_input "
            f"(e.g. {list(not_processed[:_EXAMPLES])}) and {len(not_embedded)} processed "
            f"cells were not embedded (e.g. {list(not_embedded[:_EXAMPLES])}). Re-run the "
            "embedding on the current data (kedro run --pipeline embedding), or evaluate "
            "against the data version the embedding was made from: kedro run --pipeline "
            "evaluation --load-versions model_input:<version>."
        )
    return model_input.obs_names.get_indexer(embeddings.obs_names)


def selected_cells(obs: pd.DataFrame, splits: list[str] | None) -> np.ndarray:
    """Boolean mask of the cells in ``splits`` (every cell when None)."""
    if splits is None:
        return np.ones(len(obs), dtype=bool)
    if "split" not in obs:
        raise EvaluationInputError(
            f"evaluation.splits = {splits} but the embeddings have no obs['split']. Set "
            f"evaluation.splits to null in {PARAMETERS_FILE} to evaluate every cell."
        )
    present = set(obs["split"].astype(str))
    unknown = sorted(set(splits) - present)
    if unknown:
        raise EvaluationInputError(
            f"evaluation.splits names {unknown}, which no cell belongs to (splits present: "
            f"{sorted(present)}). Fix evaluation.splits in {PARAMETERS_FILE}."
        )
    return obs["split"].astype(str).isin(splits).to_numpy()


def _finite(embeddings: AnnData, key: str) -> np.ndarray:
    values = np.asarray(embeddings.obsm[key], dtype=np.float32)
    bad = int((~np.isfinite(values)).any(axis=1).sum())
    if bad:
        raise EvaluationInputError(
            f"obsm['{key}'] has non-finite values in {bad} cells; the model diverged. "
            "Retrain it (e.g. with a lower training.optimizer.learning_rate)."
        )
    return values


def unintegrated_pca(
    model_input: AnnData, positions: np.ndarray, config: EvaluationParams
) -> np.ndarray:
    """PCA of the log-normalised highly variable genes, the scIB unintegrated baseline."""
    genes = np.ones(model_input.n_vars, dtype=bool)
    if "highly_variable" in model_input.var:
        genes = model_input.var["highly_variable"].to_numpy(dtype=bool)
    expression = model_input.X[positions][:, genes]
    n_comps = min(config.baselines.n_comps, expression.shape[0] - 1, expression.shape[1] - 1)
    if n_comps < 2:
        raise EvaluationInputError(
            f"model_input has {int(genes.sum())} (highly variable) genes and "
            f"{len(positions)} evaluated cells: too few for a PCA baseline."
        )
    return sc.pp.pca(expression, n_comps=n_comps, random_state=config.seed)


def harmony(pcs: np.ndarray, obs: pd.DataFrame, batch_key: str, seed: int) -> np.ndarray:
    """Harmony-corrected principal components (harmonypy, imported only when installed)."""
    import harmonypy  # noqa: PLC0415 (optional dependency)

    result = harmonypy.run_harmony(
        np.asarray(pcs, dtype=np.float64), obs[[batch_key]], [batch_key], random_state=seed
    )
    corrected = np.asarray(result.Z_corr)
    # harmonypy < 0.1 returns components x cells, later versions cells x components
    # (which is why scanpy's harmony_integrate breaks with them: scverse/scanpy#3940).
    if corrected.shape[0] != len(obs):
        corrected = corrected.T
    return corrected.astype(np.float32)


def stratified_subsample(
    obs: pd.DataFrame, record: dict[str, Any], max_cells: int, seed: int
) -> np.ndarray:
    """Mask of a seeded subsample of about ``max_cells`` cells, stratified by batch and
    cell type; each stratum keeps its share and at least one cell, so rare cell types
    (which the isolated-labels metric is about) survive."""
    if len(obs) <= max_cells:
        return np.ones(len(obs), dtype=bool)
    keys = [key for key in (record["batch_key"], record["cell_type_key"]) if key]
    rng = np.random.default_rng(seed)
    fraction = max_cells / len(obs)
    keep = np.zeros(len(obs), dtype=bool)
    for positions in obs.groupby(keys, observed=True, dropna=False).indices.values():
        take = max(1, round(len(positions) * fraction))
        keep[rng.choice(positions, size=take, replace=False)] = True
    return keep


# ---- integration benchmark --------------------------------------------------------------


def benchmark_integration(
    evaluation_cells: AnnData, params: dict[str, Any]
) -> tuple[pd.DataFrame, Figure]:
    """scib-metrics' integration benchmark of the model's latent and the baselines.

    Scores are scib-metrics' raw values (``get_results(min_max_scale=False)``), not
    rescaled between the embeddings, so they compare across runs. Without a cell-type
    key only the batch-correction metrics run; BRAS, kBET and graph connectivity, which
    work per label, then treat all cells as one label.

    Args:
        evaluation_cells: Output of :func:`prepare_evaluation_cells`.
        params: The ``evaluation`` parameter block.

    Returns:
        One row per embedding (``embedding``, ``role`` model/baseline, ``supervised``,
        ``n_cells``, one column per metric, ``Batch correction``, ``Bio conservation``,
        ``Total`` and a ``note``) and a heat table of the scores (:func:`plot_results`).
    """
    from scib_metrics.benchmark import (  # noqa: PLC0415 (jax import takes seconds)
        BatchCorrection,
        Benchmarker,
        BioConservation,
    )

    config = validate_section("evaluation", EvaluationParams, params)
    info = evaluation_cells.uns[RECORD_KEY]
    cells = evaluation_cells[evaluation_cells.obs[SUBSAMPLE_COLUMN].to_numpy()]
    has_labels = info["cell_type_key"] is not None
    bio = _metric_flags(BioConservation, config.metrics.bio) if has_labels else None
    batch = _metric_flags(BatchCorrection, config.metrics.batch)
    if bio is None and batch is None:
        raise EvaluationInputError(
            "No metric to compute: the data has no cell-type key, so the bio-conservation "
            f"metrics cannot run, and evaluation.metrics.batch is empty. Name batch metrics "
            f"in {PARAMETERS_FILE}."
        )
    if not has_labels:
        logger.info("No cell-type key: only batch-correction metrics run")

    benchmarker = Benchmarker(
        _benchmark_data(cells, info),
        batch_key=BATCH,
        label_key=CELL_TYPE,
        embedding_obsm_keys=list(info["embeddings"]),
        bio_conservation_metrics=bio,
        batch_correction_metrics=batch,
        pre_integrated_embedding_obsm_key=PCA_KEY,
        progress_bar=False,
    )
    logger.info(
        "scib-metrics on %d cells: %s", cells.n_obs, ", ".join(_enabled(bio) + _enabled(batch))
    )
    with neighbour_search(config.neighbors) as neighbour_computer:
        benchmarker.prepare(neighbor_computer=neighbour_computer)
        benchmarker.benchmark()
    raw_results = benchmarker.get_results(min_max_scale=False)
    results = results_table(raw_results, info, cells.n_obs)
    logger.info("scib-metrics (unscaled):\n%s", results.drop(columns="note").to_string(index=False))
    return results, plot_results(raw_results, info, cells.n_obs)


def _metric_flags(metric_class: type, names: list[str]) -> Any:
    """A BioConservation / BatchCorrection with exactly ``names`` on (None if empty)."""
    if not names:
        return None
    return metric_class(**{field.name: field.name in names for field in fields(metric_class)})


def _enabled(metrics: Any) -> list[str]:
    return [] if metrics is None else [f.name for f in fields(metrics) if getattr(metrics, f.name)]


def _benchmark_data(cells: AnnData, info: dict[str, Any]) -> AnnData:
    """The embeddings under their display names, with plain batch and label columns."""
    batch = cells.obs[info["batch_key"]].astype(str).to_numpy()
    # scib-metrics' Benchmarker always reads a label column; with no cell types every
    # cell gets the same label, and only batch metrics run.
    labels = (
        cells.obs[info["cell_type_key"]].astype(str).to_numpy()
        if info["cell_type_key"]
        else np.full(cells.n_obs, "all cells")
    )
    obsm = {name: np.asarray(cells.obsm[key]) for name, key in info["embeddings"].items()}
    obsm[PCA_KEY] = np.asarray(cells.obsm[info["pre_integrated_key"]])
    obs = pd.DataFrame({BATCH: batch, CELL_TYPE: labels}, index=cells.obs_names)
    return AnnData(np.zeros((cells.n_obs, 0), dtype=np.float32), obs=obs, obsm=obsm)


def exact_neighbours(X: np.ndarray, n_neighbors: int, **_: Any) -> Any:
    """Exact k nearest neighbours (the cell itself first), as scib-metrics wants them."""
    from scib_metrics.nearest_neighbors import NeighborsResults  # noqa: PLC0415

    distances, indices = NearestNeighbors(n_neighbors=n_neighbors).fit(X).kneighbors(X)
    return NeighborsResults(indices=indices, distances=distances)


@contextmanager
def neighbour_search(method: str) -> Iterator[Any]:
    """The neighbour search of the benchmark, ``exact`` or scib-metrics' ``pynndescent``.

    With ``exact``, scikit-learn also replaces pynndescent inside scib-metrics' kBET,
    whose diffusion-map neighbours call ``scib_metrics.nearest_neighbors.pynndescent``
    with no way to pass another search: pynndescent's numba compilation costs ~50 s per
    process on two cores while the search itself takes under a second on 20,000 cells.
    """
    if method == "pynndescent":
        yield None
        return
    import scib_metrics.nearest_neighbors  # noqa: PLC0415

    with mock.patch.object(scib_metrics.nearest_neighbors, "pynndescent", exact_neighbours):
        yield exact_neighbours


def results_table(results: pd.DataFrame, info: dict[str, Any], n_cells: int) -> pd.DataFrame:
    """scib-metrics' results (embeddings x metrics + a 'Metric Type' row) as a flat
    table: descriptive columns, the metrics, the three aggregate scores and a note."""
    scores = results.drop(index=METRIC_TYPE_ROW).astype(float)
    for column in SCORE_COLUMNS:
        if column not in scores:
            scores[column] = np.nan
    metric_columns = [c for c in scores.columns if c not in SCORE_COLUMNS]
    scores = scores[[*metric_columns, *SCORE_COLUMNS]]
    is_model = scores.index == info["model"]
    supervised = is_model & _supervised(info)
    notes = []
    for supervised_row in supervised:
        note = []
        if not info["cell_type_key"]:
            note.append(
                "no cell-type key: bio conservation not computed; BRAS, kBET and graph "
                "connectivity treat all cells as one label"
            )
        if supervised_row:
            note.append("bio conservation is supervised: the model was given the cell types")
        notes.append("; ".join(note))
    table = scores.reset_index(names="embedding")
    table.insert(1, "role", np.where(is_model, MODEL, BASELINE))
    table.insert(2, "supervised", supervised)
    table.insert(3, "n_cells", n_cells)
    table["note"] = notes
    return table


def _supervised(info: dict[str, Any]) -> bool:
    """Whether the model's bio-conservation scores are supervised: it saw the labels."""
    return bool(info["supervised"] and info["cell_type_key"])


def plot_results(results: pd.DataFrame, info: dict[str, Any], n_cells: int) -> Figure:
    """Heat table of scib-metrics' results on a fixed 0-1 colour scale.

    Drawn here rather than with ``Benchmarker.plot_results_table``, whose colours are
    relative to each column's spread: a single embedding comes out blank and a tie
    (e.g. two perfect NMIs) in the colour of the worst score.
    """
    kinds = results.loc[METRIC_TYPE_ROW]
    scores = results.drop(index=METRIC_TYPE_ROW).astype(float)
    groups = list(dict.fromkeys(kinds))
    columns = [column for group in groups for column in kinds.index[kinds == group]]
    values = scores[columns].to_numpy()
    figure = Figure(
        figsize=(2.2 + 0.95 * len(columns), 1.9 + 0.45 * len(scores)), layout="constrained"
    )
    axis = figure.subplots()
    colours = colormaps["YlGnBu"].copy()
    colours.set_bad("whitesmoke")
    axis.imshow(np.ma.masked_invalid(values), cmap=colours, vmin=0, vmax=1, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        axis.text(
            column,
            row,
            "n/a" if np.isnan(value) else f"{value:.2f}",
            ha="center",
            va="center",
            fontsize=9,
            color="white" if value > 0.6 else "black",
        )
    rows = [
        f"{name} (supervised)" if name == info["model"] and _supervised(info) else name
        for name in scores.index
    ]
    axis.set_yticks(range(len(rows)), rows)
    for label in axis.get_yticklabels():
        if label.get_text().startswith(info["model"]):
            label.set_fontweight("bold")
    axis.set_xticks(range(len(columns)), [c.replace(" ", "\n", 1) for c in columns], fontsize=8)
    axis.tick_params(length=0)
    axis.xaxis.tick_top()
    start = 0
    for group in groups:
        width = int((kinds == group).sum())
        if start:
            axis.axvline(start - 0.5, color="black", linewidth=1.5)
        axis.annotate(
            group,
            xy=(start + (width - 1) / 2, 1),
            xycoords=("data", "axes fraction"),
            xytext=(0, 30),  # above the two-line column labels
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontweight="bold",
        )
        start += width
    title = f"scib-metrics: {info['model']} vs baselines, {n_cells:,} cells, unscaled scores"
    if _supervised(info):
        title += f"\n{info['model']}'s bio conservation is supervised (trained with cell types)"
    if not info["cell_type_key"]:
        title += "\nno cell-type key: batch correction only"
    figure.suptitle(title)
    return figure


def scib_results_to_metrics(scib_results: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The benchmark as MLflow metrics: ``scib/<metric>`` for the model (the same keys for
    every model, so MLflow's compare view lines runs up) and ``scib/<baseline>/<metric>``.

    Args:
        scib_results: Output of :func:`benchmark_integration`.

    Returns:
        ``{key: {"value": v, "step": 0}}`` for every computed (non-missing) score.
    """
    metrics = {}
    score_columns = [c for c in scib_results.columns if c not in DESCRIPTION_COLUMNS]
    for _, row in scib_results.iterrows():
        prefix = "scib" if row["role"] == MODEL else f"scib/{row['embedding']}"
        for column in score_columns:
            if pd.notna(row[column]):
                metrics[f"{prefix}/{snake_case(column)}"] = {
                    "value": float(row[column]),
                    "step": 0,
                }
    return metrics


def snake_case(name: str) -> str:
    """'KMeans NMI' -> 'kmeans_nmi'."""
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


# ---- UMAPs ------------------------------------------------------------------------------


def compute_umaps(evaluation_cells: AnnData, params: dict[str, Any]) -> pd.DataFrame:
    """2-D UMAP of each benchmarked embedding, on the benchmark subsample.

    Args:
        evaluation_cells: Output of :func:`prepare_evaluation_cells`.
        params: The ``evaluation`` parameter block (``umap``).

    Returns:
        Long table: ``cell``, ``embedding``, ``role``, ``umap_1``, ``umap_2``, ``batch``,
        ``cell_type`` (missing without a cell-type key).
    """
    config = validate_section("evaluation", EvaluationParams, params).umap
    info = evaluation_cells.uns[RECORD_KEY]
    cells = evaluation_cells[evaluation_cells.obs[SUBSAMPLE_COLUMN].to_numpy()]
    n_neighbors = min(config.n_neighbors, cells.n_obs - 1)
    frames = []
    for name, key in info["embeddings"].items():
        adata = AnnData(
            np.zeros((cells.n_obs, 0), dtype=np.float32),
            obs=pd.DataFrame(index=cells.obs_names),
            obsm={"X_embedding": np.asarray(cells.obsm[key])},
        )
        sc.pp.neighbors(
            adata, n_neighbors=n_neighbors, use_rep="X_embedding", random_state=config.seed
        )
        sc.tl.umap(adata, min_dist=config.min_dist, random_state=config.seed)
        frames.append(
            pd.DataFrame(
                {
                    "cell": cells.obs_names,
                    "embedding": name,
                    "role": MODEL if name == info["model"] else BASELINE,
                    "umap_1": adata.obsm["X_umap"][:, 0],
                    "umap_2": adata.obsm["X_umap"][:, 1],
                    **_labels(cells.obs, info),
                }
            )
        )
        logger.info("UMAP of %s on %d cells", name, cells.n_obs)
    return pd.concat(frames, ignore_index=True)


def _labels(obs: pd.DataFrame, info: dict[str, Any]) -> dict[str, Any]:
    cell_type_key = info["cell_type_key"]
    return {
        BATCH: obs[info["batch_key"]].astype(str).to_numpy(),
        CELL_TYPE: obs[cell_type_key].astype(str).to_numpy() if cell_type_key else None,
    }


def plot_umaps(umap_coordinates: pd.DataFrame) -> Figure:
    """UMAP grid: one row per embedding, coloured by batch and by cell type.

    Args:
        umap_coordinates: Output of :func:`compute_umaps`.

    Returns:
        The figure; legends sit to the right of each column's top panel.
    """
    names = list(dict.fromkeys(umap_coordinates["embedding"]))
    colour_by = [column for column in (BATCH, CELL_TYPE) if umap_coordinates[column].notna().any()]
    figure = Figure(figsize=(6.2 * len(colour_by), 4.2 * len(names)), layout="constrained")
    axes = figure.subplots(len(names), len(colour_by), squeeze=False)
    for row, name in enumerate(names):
        coordinates = umap_coordinates[umap_coordinates["embedding"] == name]
        for column, key in enumerate(colour_by):
            axis = axes[row, column]
            _categorical_scatter(axis, coordinates, key, legend=row == 0)
            axis.set_title(f"{name} — {key.replace('_', ' ')}")
    n_cells = int((umap_coordinates["embedding"] == names[0]).sum())
    figure.suptitle(f"UMAP of each embedding ({n_cells:,} cells)")
    return figure


def _categorical_scatter(axis: Axes, coordinates: pd.DataFrame, key: str, legend: bool) -> None:
    categories = sorted(coordinates[key].unique())
    palette = default_20 if len(categories) <= len(default_20) else default_102
    colours = dict(zip(categories, palette, strict=False))
    # A fixed shuffle, so no batch or type is painted over all the others.
    shuffled = coordinates.sample(frac=1.0, random_state=0)
    axis.scatter(
        shuffled["umap_1"],
        shuffled["umap_2"],
        c=shuffled[key].map(colours).fillna("lightgrey").to_list(),
        s=_point_size(len(shuffled)),
        linewidths=0,
        rasterized=True,
    )
    _bare_axes(axis)
    if legend:
        handles = [
            axis.scatter([], [], color=colours[category], s=30, label=str(category))
            for category in categories
        ]
        axis.legend(
            handles=handles,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            frameon=False,
            fontsize=8,
            ncol=math.ceil(len(categories) / 18),
            title=key.replace("_", " "),
        )


def _point_size(n_cells: int) -> float:
    # scanpy's default: smaller points for more cells.
    return float(np.clip(120_000 / max(n_cells, 1), 0.5, 30))


def _bare_axes(axis: Axes) -> None:
    axis.set_xticks([])
    axis.set_yticks([])
    axis.set_xlabel("UMAP 1")
    axis.set_ylabel("UMAP 2")


# ---- latent dimensions vs covariates ----------------------------------------------------


def compute_latent_association(evaluation_cells: AnnData) -> pd.DataFrame:
    """How strongly each latent dimension depends on batch and on cell type.

    For every dimension of the corrected latent (``z_i``, or ``z`` for a model without
    a technical latent) and of the technical latent (``z_s``): the effect size η² of a
    one-way ANOVA (between-group over total sum of squares, the share of the
    dimension's variance the covariate explains) and the Kruskal-Wallis H test, whose
    p-values are corrected for multiple testing (Benjamini-Hochberg) over the whole
    table.

    Args:
        evaluation_cells: Output of :func:`prepare_evaluation_cells`.

    Returns:
        One row per latent x dimension x covariate: ``latent``, ``dimension``,
        ``covariate`` (batch / cell_type), ``obs_key``, ``n_groups``, ``eta_squared``,
        ``kruskal_h``, ``p_value``, ``q_value``.
    """
    info = evaluation_cells.uns[RECORD_KEY]
    covariates = {BATCH: info["batch_key"], CELL_TYPE: info["cell_type_key"]}
    frames = []
    for latent, key in latent_names(info).items():
        values = np.asarray(evaluation_cells.obsm[key], dtype=np.float64)
        for covariate, obs_key in covariates.items():
            if obs_key is None:
                continue
            groups = evaluation_cells.obs[obs_key]
            known = groups.notna().to_numpy()
            n_groups = groups[known].nunique()
            if n_groups < 2:
                logger.warning(
                    "Latent association with %s skipped: the evaluated cells have %d group(s)",
                    obs_key,
                    n_groups,
                )
                continue
            codes = pd.factorize(groups[known])[0]
            h, p = kruskal_wallis(values[known], codes)
            frames.append(
                pd.DataFrame(
                    {
                        "latent": latent,
                        "dimension": np.arange(values.shape[1]),
                        "covariate": covariate,
                        "obs_key": obs_key,
                        "n_groups": n_groups,
                        "eta_squared": eta_squared(values[known], codes),
                        "kruskal_h": h,
                        "p_value": p,
                    }
                )
            )
    if not frames:
        raise EvaluationInputError(
            "No latent association to compute: every covariate has fewer than two groups."
        )
    table = pd.concat(frames, ignore_index=True)
    table["q_value"] = benjamini_hochberg(table["p_value"].to_numpy())
    return table


def latent_names(info: dict[str, Any]) -> dict[str, str]:
    """Short name -> obsm key of each latent: z_i and z_s for inVAE, z otherwise."""
    if info["technical_key"]:
        return {"z_i": info["latent_key"], "z_s": info["technical_key"]}
    return {"z": info["latent_key"]}


def eta_squared(values: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """η² per column: between-group over total sum of squares (one-way ANOVA)."""
    frame = pd.DataFrame(values)
    centred = frame - frame.mean()
    group_means = centred.groupby(codes).transform("mean")
    ss_total = (centred**2).sum().to_numpy()
    ss_between = (group_means**2).sum().to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(ss_total > 0, ss_between / ss_total, np.nan)


def kruskal_wallis(values: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kruskal-Wallis H and p per column, all columns in one vectorised scipy call."""
    samples = [values[codes == group] for group in np.unique(codes)]
    result = stats.kruskal(*samples, axis=0)
    return np.atleast_1d(result.statistic), np.atleast_1d(result.pvalue)


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """FDR-adjusted q-values; undefined p-values (constant dimensions) stay missing."""
    q_values = np.full(len(p_values), np.nan)
    defined = np.isfinite(p_values)
    if defined.any():
        q_values[defined] = multipletests(p_values[defined], method="fdr_bh")[1]
    return q_values


def plot_latent_association(latent_association: pd.DataFrame) -> Figure:
    """Heat map of η²: rows = latent dimensions grouped by latent, columns = covariates.

    Args:
        latent_association: Output of :func:`compute_latent_association`.

    Returns:
        The figure, one panel per latent on a shared 0-1 colour scale.
    """
    latents = list(dict.fromkeys(latent_association["latent"]))
    covariates = list(dict.fromkeys(latent_association["covariate"]))
    heights = [
        latent_association.loc[latent_association["latent"] == z, "dimension"].nunique()
        for z in latents
    ]
    figure = Figure(
        figsize=(2.4 + 1.4 * len(covariates), 1.4 + 0.26 * sum(heights)), layout="constrained"
    )
    axes = figure.subplots(len(latents), 1, squeeze=False, height_ratios=heights)[:, 0]
    image = None
    for index, (axis, latent) in enumerate(zip(axes, latents, strict=True)):
        grid = latent_association[latent_association["latent"] == latent].pivot(
            index="dimension", columns="covariate", values="eta_squared"
        )[covariates]
        image = axis.imshow(grid.to_numpy(), cmap="viridis", vmin=0, vmax=1, aspect="auto")
        axis.set_yticks(range(len(grid)), [str(d) for d in grid.index], fontsize=7)
        axis.set_ylabel(f"{latent} dimension")
        axis.set_xticks(range(len(covariates)), [c.replace("_", " ") for c in covariates])
        axis.xaxis.tick_top()
        if index > 0:
            axis.tick_params(axis="x", labeltop=False)
        for (row, column), value in np.ndenumerate(grid.to_numpy()):
            if np.isfinite(value):
                axis.text(
                    column,
                    row,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if value > 0.5 else "white",
                )
    figure.colorbar(image, ax=list(axes), label="η² (share of variance explained)", shrink=0.6)
    figure.suptitle("Latent dimensions vs batch and cell type")
    return figure


# ---- anomalies --------------------------------------------------------------------------


def score_anomalies(evaluation_cells: AnnData, params: dict[str, Any]) -> pd.DataFrame:
    """Per-cell anomaly score from the corrected latent and the reconstruction error.

    The latent score is an IsolationForest's (its negated ``score_samples``) or the mean
    distance to the ``n_neighbors`` nearest cells (``knn``); higher is more anomalous.
    The reconstruction error (``obs["reconstruction_error"]``, the per-cell negative
    log-likelihood, when the embedding has it) grows with a cell's counts, so by
    default (``reconstruction: depth_adjusted``) what enters is its excess over cells of
    the same depth (:func:`depth_adjusted`). The two are combined by averaging their
    percentile ranks (``rank``: robust to their different scales and heavy tails) or
    their z-scores (``zscore``: keeps how extreme a cell is). The top ``fraction`` of
    cells are flagged.

    Args:
        evaluation_cells: Output of :func:`prepare_evaluation_cells`.
        params: The ``evaluation`` parameter block (``anomaly``).

    Returns:
        One row per evaluated cell, most anomalous first: ``rank``, ``cell``, ``batch``,
        ``cell_type``, ``split``, ``library_size``, ``latent_score``,
        ``reconstruction_error`` (raw), ``reconstruction_score`` (what was combined),
        ``combined_score``, ``flagged``.
    """
    config = validate_section("evaluation", EvaluationParams, params).anomaly
    info = evaluation_cells.uns[RECORD_KEY]
    obs = evaluation_cells.obs
    latent_score = latent_outlier_score(
        np.asarray(evaluation_cells.obsm[info["latent_key"]]), config
    )
    library_size = _column(obs, LIBRARY_SIZE)
    reconstruction = _column(obs, RECONSTRUCTION_ERROR)
    reconstruction_score = reconstruction_for_scoring(reconstruction, library_size, config)
    combined = combine_scores([latent_score, reconstruction_score], config.combine)
    n_flagged = math.ceil(config.fraction * len(obs))
    order = np.argsort(-combined, kind="stable")
    labels = _labels(obs, info)
    table = pd.DataFrame(
        {
            "rank": np.arange(1, len(obs) + 1),
            "cell": obs.index.to_numpy()[order],
            BATCH: labels[BATCH][order],
            CELL_TYPE: None if labels[CELL_TYPE] is None else labels[CELL_TYPE][order],
            "split": obs["split"].astype(str).to_numpy()[order] if "split" in obs else None,
            LIBRARY_SIZE: library_size[order],
            "latent_score": latent_score[order],
            RECONSTRUCTION_ERROR: reconstruction[order],
            "reconstruction_score": reconstruction_score[order],
            "combined_score": combined[order],
            "flagged": np.arange(len(obs)) < n_flagged,
        }
    )
    logger.info(
        "Flagged %d of %d cells as anomalous (%s, %s)",
        n_flagged,
        len(obs),
        config.method,
        config.combine,
    )
    return table


def _column(obs: pd.DataFrame, key: str) -> np.ndarray:
    """An obs column as floats, all missing where obs lacks it."""
    if key not in obs:
        return np.full(len(obs), np.nan)
    return obs[key].to_numpy(dtype=float)


def reconstruction_for_scoring(
    reconstruction: np.ndarray, library_size: np.ndarray, config: AnomalyParams
) -> np.ndarray:
    """The reconstruction error as it enters the anomaly score (see ``reconstruction``)."""
    if not np.isfinite(reconstruction).any():
        logger.info("No obs['%s']: anomalies from the latent alone", RECONSTRUCTION_ERROR)
        return reconstruction
    if config.reconstruction == "raw":
        return reconstruction
    if not np.isfinite(library_size).any():
        logger.warning(
            "model_input has no layers['%s']: the reconstruction error enters the anomaly "
            "score unadjusted for sequencing depth",
            COUNTS_LAYER,
        )
        return reconstruction
    return depth_adjusted(reconstruction, library_size)


def depth_adjusted(reconstruction: np.ndarray, library_size: np.ndarray) -> np.ndarray:
    """log reconstruction error minus its LOWESS trend over log library size.

    A cell's negative log-likelihood is a sum over its counts, so deep cells have large
    errors however well they are modelled (Spearman ~0.95 on the simulated default
    data); the residual is the error beyond what the cell's depth explains.
    """
    log_error = np.log1p(reconstruction)
    log_depth = np.log1p(library_size)
    # delta: fit the trend at points spaced 1% of the range apart and interpolate in
    # between, which keeps LOWESS linear in the number of cells.
    trend = lowess(
        log_error, log_depth, frac=0.3, delta=0.01 * np.ptp(log_depth), return_sorted=False
    )
    return log_error - trend


def latent_outlier_score(latent: np.ndarray, config: AnomalyParams) -> np.ndarray:
    """Outlyingness of each cell in the latent space; higher is more anomalous."""
    if config.method == "isolation_forest":
        forest = IsolationForest(random_state=config.seed).fit(latent)
        return -forest.score_samples(latent)
    n_neighbors = min(config.n_neighbors + 1, len(latent))
    distances, _ = NearestNeighbors(n_neighbors=n_neighbors).fit(latent).kneighbors(latent)
    # The first neighbour is the cell itself.
    return distances[:, 1:].mean(axis=1)


def combine_scores(scores: list[np.ndarray], method: str) -> np.ndarray:
    """Mean of the scores' percentile ranks or z-scores; missing scores are left out."""
    if method == "rank":
        scaled = [
            stats.rankdata(s, nan_policy="omit") / np.isfinite(s).sum()
            for s in scores
            if np.isfinite(s).any()
        ]
    else:
        scaled = [stats.zscore(s, nan_policy="omit") for s in scores if np.isfinite(s).any()]
    return np.nanmean(np.vstack(scaled), axis=0)


def plot_anomalies(
    umap_coordinates: pd.DataFrame, anomaly_scores: pd.DataFrame, params: dict[str, Any]
) -> Figure:
    """The model's UMAP coloured by the combined anomaly score, flagged cells ringed.

    Args:
        umap_coordinates: Output of :func:`compute_umaps`.
        anomaly_scores: Output of :func:`score_anomalies`.
        params: The ``evaluation`` parameter block (``anomaly``, for the title).

    Returns:
        The figure.
    """
    config = validate_section("evaluation", EvaluationParams, params).anomaly
    model_umap = umap_coordinates[umap_coordinates["role"] == MODEL]
    cells = model_umap.merge(anomaly_scores[["cell", "combined_score", "flagged"]], on="cell")
    # The most anomalous cells on top.
    cells = cells.sort_values("combined_score")
    figure = Figure(figsize=(7.5, 6), layout="constrained")
    axis = figure.subplots()
    points = axis.scatter(
        cells["umap_1"],
        cells["umap_2"],
        c=cells["combined_score"],
        cmap="viridis",
        s=_point_size(len(cells)),
        linewidths=0,
        rasterized=True,
    )
    flagged = cells[cells["flagged"]]
    axis.scatter(
        flagged["umap_1"],
        flagged["umap_2"],
        s=max(4 * _point_size(len(cells)), 25),
        facecolors="none",
        edgecolors="red",
        linewidths=1.0,
        label=f"flagged ({len(flagged)} of {int(anomaly_scores['flagged'].sum())} in view)",
    )
    _bare_axes(axis)
    axis.legend(loc="upper right", frameon=False, fontsize=8)
    figure.colorbar(points, ax=axis, label=f"combined anomaly score ({config.combine})")
    name = model_umap["embedding"].iloc[0] if len(model_umap) else "model"
    axis.set_title(
        f"{name}: anomaly score, top {config.fraction:.1%} flagged\n"
        f"{config.method.replace('_', ' ')} on the latent"
        + (
            f" + {config.reconstruction.replace('_', '-')} reconstruction error,"
            f" {config.combine} average"
            if anomaly_scores[RECONSTRUCTION_ERROR].notna().any()
            else " (no reconstruction error)"
        ),
        fontsize=10,
    )
    return figure
