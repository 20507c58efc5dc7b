"""Nodes of the single-cell data-processing pipeline: raw counts to model input.

Memory policy, chosen because single-cell matrices are large: no node modifies a matrix
in place, and no node copies one it does not change. Each node returns a new AnnData
whose annotations (``obs``, ``var``, ``uns``) are its own copies while unchanged
matrices are shared with its input. A caller can keep using any node's input, and the
pipeline never holds more copies of the counts than a plain scanpy script would.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from scipy import sparse
from sklearn.model_selection import train_test_split

from omics_vae.params import validate_section
from omics_vae.schemas.data_processing import DataProcessingParams, HVGParams, QCParams, SplitParams

logger = logging.getLogger(__name__)

PARAMETERS_FILE = "conf/base/parameters_data_processing.yml"
# A user's own settings: git-ignored, merged key by key over conf/base.
LOCAL_PARAMETERS_FILE = "conf/local/parameters_data_processing.yml"
LOCAL_CATALOG_FILE = "conf/local/catalog.yml"
SPLITS = ("train", "val", "test")
RECORD_KEY = "data_processing"
QC_METRICS = ("n_genes_by_counts", "total_counts", "pct_counts_mt")
# Values the raw-counts check reads at a time: bounds its temporary arrays (tens of MB)
# whatever the size of the matrix, while numpy still runs at full speed.
_COUNTS_CHUNK_VALUES = 1 << 22
# Kinds of values that are not raw counts, in the order they are reported, each with
# the processing that typically produces it.
_BAD_VALUE_KINDS = (
    ("NaN or infinite", ""),
    ("negative", ", as scaled data has"),
    ("non-integer", ", as normalised or log-transformed data has"),
)
_BACKED_SPARSE = (ad.abc.CSRDataset, ad.abc.CSCDataset)
# Wider LOESS spans for seurat_v3 to fall back on; 1.0 is a global quadratic fit.
_WIDER_SPANS = (0.5, 0.7, 1.0)


class DataProcessingError(ValueError):
    """Raised when the raw data or the QC thresholds cannot give a usable model input."""


def validate_raw_data(raw_counts: ad.AnnData, parameters: dict[str, Any]) -> ad.AnnData:
    """Checks the raw data against the parameters and puts the counts in ``X``.

    Args:
        raw_counts: Cells x genes with raw integer counts in ``X`` or in a layer.
        parameters: The ``data_processing`` parameter block.

    Returns:
        A new AnnData holding only the counts (``X``, float32 CSR), ``obs`` and ``var``;
        other layers, ``obsm`` and ``uns`` are dropped so nothing stale reaches the
        model input. ``X`` shares memory with the input when it already is float32 CSR.
        Gene and cell names are made unique, batch and cell-type columns categorical.

    Raises:
        DataProcessingError: A configured key is missing, the batch has missing values
            or the counts are not non-negative integers.
    """
    params = _validated(parameters)
    _check_obs_key(raw_counts, params.batch_key, "batch_key")
    if params.cell_type_key is not None:
        _check_obs_key(raw_counts, params.cell_type_key, "cell_type_key")
    counts = _counts_matrix(raw_counts, params.counts_layer)
    _check_counts(raw_counts, counts, params.counts_layer)

    validated = ad.AnnData(
        X=_as_float32_csr(counts),
        obs=_with_unique_index(raw_counts.obs, "cell"),
        var=_with_unique_index(raw_counts.var, "gene"),
    )
    for key in (params.batch_key, params.cell_type_key):
        if key is not None:
            validated.obs[key] = validated.obs[key].astype("category")
    _log_empty_cells_and_genes(validated.X)
    validated.uns[RECORD_KEY] = {
        "params": params.model_dump(mode="json"),
        "n_cells_raw": validated.n_obs,
        "n_genes_raw": validated.n_vars,
    }
    return validated


def filter_cells_and_genes(
    validated: ad.AnnData, parameters: dict[str, Any]
) -> tuple[ad.AnnData, pd.DataFrame, pd.DataFrame]:
    """Computes per-cell QC metrics and removes low-quality cells, then rare genes.

    Each removed cell is counted under the first filter it fails, in the order
    ``min_genes_per_cell``, ``min_counts_per_cell``, ``max_pct_mito``, so that
    ``n_cells_before`` minus the three ``removed_*`` columns equals ``n_cells_after``.

    Args:
        validated: Output of ``validate_raw_data``: counts in ``X``.
        parameters: The ``data_processing`` parameter block.

    Returns:
        The filtered cells (``obs`` gains the QC metrics, computed on all genes, and
        ``var`` gains ``mt`` and ``n_cells``; the matrix is copied only if something was
        removed), the metrics of every cell before
        filtering with a ``passed_qc`` column, and a summary table with one row per
        batch and a ``total`` row. The gene columns of the summary describe the global
        gene filter and are the same in every row.

    Raises:
        DataProcessingError: The thresholds would remove every cell, every cell of a
            batch, or every gene.
    """
    params = _validated(parameters)
    qc = params.qc
    annotated = _with_own_annotations(validated)
    annotated.var["mt"] = annotated.var_names.str.startswith(qc.mito_prefix)
    if not annotated.var["mt"].any():
        logger.warning(
            "No gene name starts with %r, so %% mito is 0 for every cell; set "
            "data_processing.qc.mito_prefix (e.g. 'mt-' for mouse) in %s.",
            qc.mito_prefix,
            PARAMETERS_FILE,
        )
    obs_metrics, _ = sc.pp.calculate_qc_metrics(
        annotated, qc_vars=["mt"], percent_top=None, log1p=False, inplace=False
    )
    # Cells without counts give 0/0; they have no mitochondrial counts either.
    obs_metrics["pct_counts_mt"] = obs_metrics["pct_counts_mt"].fillna(0.0)
    for column in QC_METRICS:
        annotated.obs[column] = obs_metrics[column]

    failed = _failed_cell_filters(annotated.obs, qc)
    keep = ~failed.any(axis=1).to_numpy()
    batches = annotated.obs[params.batch_key]
    _check_batches_survive(annotated.obs, failed, keep, params)

    cells = annotated if keep.all() else annotated[keep].copy()
    filtered = _filter_genes(cells, qc.min_cells_per_gene)
    n_genes_before = annotated.n_vars

    summary = _qc_summary(batches, failed, keep)
    summary["n_genes_before"] = n_genes_before
    summary["removed_min_cells"] = n_genes_before - filtered.n_vars
    summary["n_genes_after"] = filtered.n_vars
    _record(filtered).update(n_cells_after_qc=filtered.n_obs, n_genes_after_qc=filtered.n_vars)
    logger.info(
        "QC kept %d of %d cells and %d of %d genes.",
        filtered.n_obs,
        annotated.n_obs,
        filtered.n_vars,
        n_genes_before,
    )
    metrics = annotated.obs[[params.batch_key, *QC_METRICS]].assign(passed_qc=keep)
    return filtered, metrics, summary


def normalise_counts(filtered: ad.AnnData, parameters: dict[str, Any]) -> ad.AnnData:
    """Normalises each cell to ``target_sum`` counts and log1p-transforms.

    Args:
        filtered: Cells x genes with raw counts in ``X``.
        parameters: The ``data_processing`` parameter block.

    Returns:
        A new AnnData with ``X = log1p(normalize_total(counts))`` (a new matrix) and the
        raw counts in ``layers["counts"]`` (the input's ``X``, shared, not copied).
    """
    params = _validated(parameters)
    normalised = _with_own_annotations(filtered)
    normalised.layers["counts"] = filtered.X
    normalised.X = sc.pp.normalize_total(
        filtered, target_sum=params.normalisation.target_sum, inplace=False
    )["X"]
    # In place on the freshly normalised matrix only; also records uns["log1p"].
    sc.pp.log1p(normalised)
    return normalised


def select_highly_variable_genes(normalised: ad.AnnData, parameters: dict[str, Any]) -> ad.AnnData:
    """Flags highly variable genes, ranked within each batch.

    ``seurat_v3`` reads the raw counts in ``layers["counts"]``; the dispersion-based
    flavors read the log-normalised ``X``. ``n_top_genes`` larger than the number of
    genes is capped, with a warning. seurat_v3's LOESS fit of variance on mean is
    singular in batches where many genes share a mean (few cells, low counts; scanpy
    issue #1504); the span is then widened step by step, with a warning.

    Args:
        normalised: Output of ``normalise_counts``.
        parameters: The ``data_processing`` parameter block.

    Returns:
        A new AnnData with ``var["highly_variable"]`` and scanpy's HVG statistics;
        with ``hvg.subset`` only the highly variable genes are kept (a copy).

    Raises:
        DataProcessingError: seurat_v3's LOESS fit fails even with the widest span.
    """
    params = _validated(parameters)
    hvg = params.hvg
    n_top_genes = hvg.n_top_genes
    if n_top_genes > normalised.n_vars:
        logger.warning(
            "data_processing.hvg.n_top_genes = %d exceeds the %d genes left after QC; "
            "using %d, so every gene is flagged highly variable.",
            n_top_genes,
            normalised.n_vars,
            normalised.n_vars,
        )
        n_top_genes = normalised.n_vars
    selected = _with_own_annotations(normalised)
    span = _highly_variable_genes(selected, hvg, n_top_genes, params.batch_key)
    n_highly_variable = int(selected.var["highly_variable"].sum())
    _record(selected).update(n_highly_variable_genes=n_highly_variable, hvg_span=span)
    logger.info(
        "Flagged %d highly variable genes (%s, batch key %r)%s.",
        n_highly_variable,
        hvg.flavor,
        params.batch_key,
        "; kept only those" if hvg.subset else "",
    )
    return selected


def split_cells(selected: ad.AnnData, parameters: dict[str, Any]) -> ad.AnnData:
    """Assigns every cell to train, val or test, reproducibly for ``split.seed``.

    Stratifies by batch x cell type, with groups too small to reach the val and test
    sets merged into their batch's remainder; if that cannot be split it stratifies by
    batch only, then not at all, and logs which one it used.

    Args:
        selected: Output of ``select_highly_variable_genes``.
        parameters: The ``data_processing`` parameter block.

    Returns:
        A new AnnData (matrices shared) with the categorical ``obs["split"]`` and the
        lineage record ``uns["data_processing"]`` completed: the parameters used and
        the numbers of cells and genes at each step.
    """
    params = _validated(parameters)
    obs = selected.obs
    labels, strategy = _assign_splits(obs, params)
    model_input = _with_own_annotations(selected)
    model_input.obs["split"] = pd.Categorical(labels, categories=SPLITS)
    sizes = {name: int(np.count_nonzero(labels == name)) for name in SPLITS}
    _record(model_input).update(n_cells_per_split=sizes, split_stratified_by=strategy)
    logger.info(
        "Split %d cells into train %d, val %d, test %d, stratified by %s.",
        model_input.n_obs,
        sizes["train"],
        sizes["val"],
        sizes["test"],
        strategy,
    )
    return model_input


def plot_qc_metrics(qc_metrics: pd.DataFrame, parameters: dict[str, Any]) -> Figure:
    """Draws the QC metrics per batch, before (top row) and after (bottom row) filtering.

    Args:
        qc_metrics: Per-cell metrics from ``filter_cells_and_genes``.
        parameters: The ``data_processing`` parameter block.

    Returns:
        A 2 x 3 figure of box plots: total counts, genes detected and % mitochondrial
        counts per batch, with the QC thresholds as dashed lines.
    """
    params = _validated(parameters)
    qc = params.qc
    panels = (
        ("total_counts", "Total counts per cell", "counts", qc.min_counts_per_cell,
         "qc.min_counts_per_cell"),
        ("n_genes_by_counts", "Genes detected per cell", "genes with counts > 0",
         qc.min_genes_per_cell, "qc.min_genes_per_cell"),
        ("pct_counts_mt", "Mitochondrial counts", f"% of counts in {qc.mito_prefix}* genes",
         qc.max_pct_mito, "qc.max_pct_mito"),
    )  # fmt: skip
    batch = qc_metrics[params.batch_key]
    batches = list(batch.cat.categories) if hasattr(batch, "cat") else sorted(batch.unique())
    stages = (("before QC", qc_metrics), ("after QC", qc_metrics[qc_metrics["passed_qc"]]))

    figure = Figure(figsize=(5 * len(panels), 9), layout="constrained")
    axes = figure.subplots(len(stages), len(panels), sharey="col")
    for row, (stage, frame) in enumerate(stages):
        for col, (column, title, ylabel, threshold, key) in enumerate(panels):
            ax = axes[row, col]
            values = [frame.loc[frame[params.batch_key] == b, column].to_numpy() for b in batches]
            _box_plot(ax, values, [str(b) for b in batches])
            ax.axhline(threshold, color="tab:red", linestyle="--", label=f"{key} = {threshold:g}")
            ax.set_title(f"{title}, {stage} ({len(frame):,} cells)")
            ax.set_xlabel(f"batch (obs['{params.batch_key}'])")
            ax.set_ylabel(ylabel)
            ax.legend(loc="upper right", fontsize="small")
    figure.suptitle("Quality control per batch: before (top) and after (bottom) filtering")
    return figure


def _validated(parameters: dict[str, Any] | DataProcessingParams) -> DataProcessingParams:
    return cast(
        DataProcessingParams,
        validate_section("data_processing", DataProcessingParams, parameters),
    )


def _with_own_annotations(adata: ad.AnnData) -> ad.AnnData:
    """A new AnnData sharing ``adata``'s matrices, with its own obs, var and uns."""
    return ad.AnnData(
        X=adata.X,
        obs=adata.obs.copy(),
        var=adata.var.copy(),
        uns=copy.deepcopy(dict(adata.uns)),
        layers=dict(adata.layers),
        obsm=dict(adata.obsm),
        varm=dict(adata.varm),
    )


def _record(adata: ad.AnnData) -> dict[str, Any]:
    """The lineage record in ``adata.uns``, created when a node runs on outside data."""
    return adata.uns.setdefault(RECORD_KEY, {})


def _check_obs_key(adata: ad.AnnData, key: str, parameter: str) -> None:
    if key in adata.obs.columns:
        if parameter == "batch_key" and adata.obs[key].isna().any():
            raise DataProcessingError(
                f"obs['{key}'] (data_processing.batch_key) has "
                f"{int(adata.obs[key].isna().sum())} cells without a batch; label them "
                "or remove them from the raw data."
            )
        return
    null_hint = (
        " or to null if the data has no cell-type labels" if parameter == "cell_type_key" else ""
    )
    raise DataProcessingError(
        f"obs column '{key}' (data_processing.{parameter}) is not in the raw data "
        f"(catalog entry raw_counts). Available obs columns: {list(adata.obs.columns)}. "
        f"Set data_processing.{parameter} in {PARAMETERS_FILE} to one of them{null_hint}."
    )


def _counts_matrix(adata: ad.AnnData, layer: str | None) -> Any:
    if layer is None:
        return adata.X
    if layer not in adata.layers:
        raise DataProcessingError(
            f"layers['{layer}'] (data_processing.counts_layer) is not in the raw data "
            f"(catalog entry raw_counts). Available layers: {list(adata.layers.keys())}. "
            f"Set data_processing.counts_layer in {LOCAL_PARAMETERS_FILE} to one of them, or to "
            "null to read the counts from adata.X."
        )
    return adata.layers[layer]


@dataclass(frozen=True)
class _DenseRows:
    """A dense matrix (numpy, backed h5py, dask) read a few thousand rows at a time."""

    matrix: Any

    def blocks(self) -> Iterator[np.ndarray]:
        n_rows, n_cols = self.matrix.shape
        rows_per_block = max(1, _COUNTS_CHUNK_VALUES // max(n_cols, 1))
        for start in range(0, n_rows, rows_per_block):
            yield np.asarray(self.matrix[start : start + rows_per_block]).reshape(-1)

    def position(self, index: int) -> tuple[int, int]:
        row, col = divmod(index, self.matrix.shape[1])
        return row, col


@dataclass(frozen=True)
class _CompressedValues:
    """The stored values of a CSR or CSC matrix, in memory or backed; the rest are 0."""

    data: Any
    indices: Any
    indptr: Any
    by_rows: bool

    def blocks(self) -> Iterator[np.ndarray]:
        for start in range(0, self.data.shape[0], _COUNTS_CHUNK_VALUES):
            yield np.asarray(self.data[start : start + _COUNTS_CHUNK_VALUES])

    def position(self, index: int) -> tuple[int, int]:
        major = int(np.searchsorted(np.asarray(self.indptr), index, side="right")) - 1
        minor = int(self.indices[index])
        return (major, minor) if self.by_rows else (minor, major)


@dataclass(frozen=True)
class _BadCounts:
    """The values of a matrix that are not raw counts, of the first kind reported, and
    the first of them in storage order (row-major, or column-major for CSC)."""

    kind: int  # index into _BAD_VALUE_KINDS
    n_values: int
    row: int
    col: int
    value: Any


def _stored_values(matrix: Any) -> _DenseRows | _CompressedValues:
    if isinstance(matrix, _BACKED_SPARSE):
        group = matrix.group
        return _CompressedValues(
            group["data"], group["indices"], group["indptr"], by_rows=matrix.format == "csr"
        )
    if sparse.issparse(matrix):
        compressed = matrix if matrix.format in ("csr", "csc") else matrix.tocsr()
        return _CompressedValues(
            compressed.data,
            compressed.indices,
            compressed.indptr,
            by_rows=compressed.format == "csr",
        )
    return _DenseRows(matrix)


def _all_counts(values: np.ndarray) -> bool:
    """Whether every value is a non-negative integer: the fast test of valid data."""
    if values.size == 0 or values.dtype.kind in "bu":
        return True
    low = values.min()
    if values.dtype.kind == "i":
        return bool(low >= 0)
    # min and max are NaN as soon as one value is.
    high = values.max()
    return bool(
        np.isfinite(low)
        and np.isfinite(high)
        and low >= 0
        and np.array_equal(values, np.rint(values))
    )


def _bad_value_masks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Masks of the values of each of ``_BAD_VALUE_KINDS``, each value in its first kind."""
    non_finite = ~np.isfinite(values)
    negative = (values < 0) & ~non_finite
    non_integer = (values != np.rint(values)) & ~non_finite & ~negative
    return non_finite, negative, non_integer


def _holds_counts(matrix: Any) -> bool:
    return all(_all_counts(block) for block in _stored_values(matrix).blocks())


def _bad_counts(matrix: Any) -> _BadCounts | None:
    """What in ``matrix`` is not a raw count, reading every value; None if all are."""
    stored = _stored_values(matrix)
    n_bad = [0] * len(_BAD_VALUE_KINDS)
    first_bad: list[tuple[int, Any] | None] = [None] * len(_BAD_VALUE_KINDS)
    offset = 0
    for block in stored.blocks():
        if not _all_counts(block):
            for kind, mask in enumerate(_bad_value_masks(block)):
                n_bad[kind] += int(np.count_nonzero(mask))
                if first_bad[kind] is None and mask.any():
                    index = int(np.argmax(mask))
                    first_bad[kind] = (offset + index, block[index])
        offset += block.size
    for kind, first in enumerate(first_bad):
        if first is not None:
            index, value = first
            return _BadCounts(kind, n_bad[kind], *stored.position(index), value)
    return None


def _describe_bad_counts(bad: _BadCounts, adata: ad.AnnData) -> str:
    kind, typical_source = _BAD_VALUE_KINDS[bad.kind]
    plural = "" if bad.n_values == 1 else "s"
    return (
        f"{bad.n_values:,} {kind} value{plural} (e.g. {bad.value} at cell "
        f"'{adata.obs_names[bad.row]}', gene '{adata.var_names[bad.col]}'){typical_source}"
    )


def _counts_fix(adata: ad.AnnData, layer: str | None) -> str:
    """How to point the pipeline at the raw counts, naming the matrices that hold them."""
    candidates = [
        f"layers['{name}'] holds integers: set data_processing.counts_layer: {name}"
        for name, matrix in adata.layers.items()
        if name != layer and _holds_counts(matrix)
    ]
    if layer is not None and _holds_counts(adata.X):
        candidates.append("adata.X holds integers: set data_processing.counts_layer: null")
    if candidates:
        return "; ".join(candidates) + f" (in {LOCAL_PARAMETERS_FILE})."
    return (
        f"No layer holds raw counts (layers: {list(adata.layers.keys())}); add the raw "
        f"counts as a layer and set data_processing.counts_layer in {LOCAL_PARAMETERS_FILE}, "
        f"or point raw_counts in {LOCAL_CATALOG_FILE} at a file of raw counts."
    )


def _check_counts(adata: ad.AnnData, counts: Any, layer: str | None) -> None:
    bad = _bad_counts(counts)
    if bad is None:
        return
    where = "adata.X" if layer is None else f"layers['{layer}']"
    raise DataProcessingError(
        f"The counts in {where} of catalog entry raw_counts (data_processing.counts_layer: "
        f"{layer or 'null'}) contain {_describe_bad_counts(bad, adata)}; the models need "
        f"raw, non-negative integer counts. {_counts_fix(adata, layer)}"
    )


def _as_float32_csr(matrix: Any) -> sparse.csr_matrix:
    if isinstance(matrix, _BACKED_SPARSE):
        matrix = matrix.to_memory()
    if isinstance(matrix, sparse.csr_matrix) and matrix.dtype == np.float32:
        return matrix
    if sparse.issparse(matrix):
        return sparse.csr_matrix(matrix, dtype=np.float32)
    return sparse.csr_matrix(np.asarray(matrix, dtype=np.float32))


def _with_unique_index(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """A copy of obs or var whose names are unique, as ``var_names_make_unique`` does."""
    frame = frame.copy()
    if not frame.index.is_unique:
        duplicated = frame.index[frame.index.duplicated()].unique()
        logger.warning(
            "%d %s names occur more than once (e.g. %s); made unique by appending '-1', '-2', ...",
            len(duplicated),
            what,
            list(duplicated[:5]),
        )
        frame.index = ad.utils.make_index_unique(frame.index.astype(str))
    return frame


def _log_empty_cells_and_genes(counts: sparse.csr_matrix) -> None:
    empty_cells = int(np.count_nonzero(np.diff(counts.indptr) == 0))
    empty_genes = int(np.count_nonzero(np.bincount(counts.indices, minlength=counts.shape[1]) == 0))
    logger.info(
        "Raw data: %d cells x %d genes; %d cells and %d genes have no counts "
        "(the QC filters remove them).",
        counts.shape[0],
        counts.shape[1],
        empty_cells,
        empty_genes,
    )


def _failed_cell_filters(obs: pd.DataFrame, qc: QCParams) -> pd.DataFrame:
    """One boolean column per cell filter: True where the cell fails it."""
    return pd.DataFrame(
        {
            "min_genes_per_cell": obs["n_genes_by_counts"] < qc.min_genes_per_cell,
            "min_counts_per_cell": obs["total_counts"] < qc.min_counts_per_cell,
            "max_pct_mito": obs["pct_counts_mt"] > qc.max_pct_mito,
        },
        index=obs.index,
    )


def _removal_reasons(obs: pd.DataFrame, failed: pd.DataFrame, params: DataProcessingParams) -> str:
    metric = {
        "min_genes_per_cell": ("n_genes_by_counts", "median genes detected"),
        "min_counts_per_cell": ("total_counts", "median total counts"),
        "max_pct_mito": ("pct_counts_mt", "median % mito"),
    }
    reasons = []
    for key, column in failed.items():
        if column.any():
            threshold = getattr(params.qc, key)
            name, label = metric[key]
            reasons.append(
                f"qc.{key} = {threshold:g} removes {int(column.sum())} "
                f"({label}: {obs[name].median():g})"
            )
    return "; ".join(reasons)


def _check_batches_survive(
    obs: pd.DataFrame, failed: pd.DataFrame, keep: np.ndarray, params: DataProcessingParams
) -> None:
    relax = f"Relax these keys under data_processing.qc in {PARAMETERS_FILE}"
    if not keep.any():
        raise DataProcessingError(
            f"Quality control would remove every cell ({len(obs)} cells): "
            f"{_removal_reasons(obs, failed, params)}. {relax}."
        )
    batch = obs[params.batch_key]
    for name in pd.unique(batch[~keep]):
        in_batch = (batch == name).to_numpy()
        if not keep[in_batch].any():
            raise DataProcessingError(
                f"Quality control would remove every cell of batch '{name}' "
                f"(obs['{params.batch_key}'], {int(in_batch.sum())} cells): "
                f"{_removal_reasons(obs[in_batch], failed[in_batch], params)}. "
                f"{relax}, or remove the batch from the raw data."
            )


def _filter_genes(cells: ad.AnnData, min_cells: int) -> ad.AnnData:
    """Genes detected in at least ``min_cells`` cells; ``cells`` itself when all are."""
    gene_mask, n_cells = sc.pp.filter_genes(cells, min_cells=min_cells, inplace=False)
    if not gene_mask.any():
        raise DataProcessingError(
            f"qc.min_cells_per_gene = {min_cells} would remove every gene (the most cells "
            f"any gene is detected in is {int(n_cells.max())}). Lower "
            f"data_processing.qc.min_cells_per_gene in {PARAMETERS_FILE}."
        )
    # Skipping the copy when no gene goes saves a pass over the whole matrix.
    filtered = cells if gene_mask.all() else cells[:, gene_mask].copy()
    filtered.var["n_cells"] = n_cells[gene_mask]
    return filtered


def _qc_summary(batch: pd.Series, failed: pd.DataFrame, keep: np.ndarray) -> pd.DataFrame:
    fails_genes = failed["min_genes_per_cell"].to_numpy()
    fails_counts = failed["min_counts_per_cell"].to_numpy()
    fails_mito = failed["max_pct_mito"].to_numpy()
    per_cell = pd.DataFrame(
        {
            "n_cells_before": np.ones(len(keep), dtype=np.int64),
            "removed_min_genes": fails_genes,
            "removed_min_counts": fails_counts & ~fails_genes,
            "removed_pct_mito": fails_mito & ~fails_genes & ~fails_counts,
            "n_cells_after": keep,
        },
        dtype=np.int64,
    )
    # Grouping by categorical codes, not by strings: this runs on millions of cells.
    per_batch = per_cell.groupby(pd.Categorical(batch), observed=True).sum()
    per_batch.index = per_batch.index.astype(object)
    per_batch.loc["total"] = per_cell.sum()
    return per_batch.rename_axis("batch").reset_index()


def _codes(column: pd.Series) -> np.ndarray:
    """Integer labels of a column (missing values get their own label)."""
    return pd.factorize(column, use_na_sentinel=False)[0]


def _highly_variable_genes(
    adata: ad.AnnData, hvg: HVGParams, n_top_genes: int, batch_key: str
) -> float | None:
    """Runs scanpy's HVG selection in place; returns the LOESS span used by seurat_v3."""
    options = {
        "flavor": hvg.flavor,
        "n_top_genes": n_top_genes,
        "batch_key": batch_key,
        "subset": hvg.subset,
    }
    if hvg.flavor != "seurat_v3":
        sc.pp.highly_variable_genes(adata, **options)
        return None
    spans = [hvg.span, *(span for span in _WIDER_SPANS if span > hvg.span)]
    failure: ValueError | None = None
    for span in spans:
        try:
            # The fit fails before scanpy writes anything, so a retry starts clean.
            sc.pp.highly_variable_genes(adata, layer="counts", span=span, **options)
        except ValueError as error:  # skmisc reports a failed LOESS fit as ValueError
            failure = error
            reason = error.args[0] if error.args else error
            reason = reason.decode().strip() if isinstance(reason, bytes) else reason
            continue
        if span != hvg.span:
            logger.warning(
                "seurat_v3's LOESS fit failed with data_processing.hvg.span = %g (%s); "
                "used span %g. Set data_processing.hvg.span: %g in %s to skip the failing "
                "attempts.",
                hvg.span,
                reason,
                span,
                span,
                PARAMETERS_FILE,
            )
        return span
    raise DataProcessingError(
        f"seurat_v3's LOESS fit failed for every span in {spans} ({reason}); a batch may "
        f"have too few cells. Set data_processing.hvg.flavor: seurat in {PARAMETERS_FILE}, "
        "or merge small batches."
    ) from failure


def _strata_candidates(
    obs: pd.DataFrame, params: DataProcessingParams
) -> list[tuple[str, np.ndarray | None]]:
    """Stratifications to try, finest first, each with a description for the log."""
    # Integer codes rather than joined strings: this runs on millions of cells.
    batch = _codes(obs[params.batch_key])
    candidates: list[tuple[str, np.ndarray | None]] = []
    held_out = params.split.val + params.split.test
    if params.cell_type_key is not None and held_out > 0:
        cell_type = _codes(obs[params.cell_type_key])
        groups = batch * (cell_type.max() + 1) + cell_type
        _, group_of_cell, group_sizes = np.unique(groups, return_inverse=True, return_counts=True)
        # A group needs about two cells in val + test for its second split.
        small = group_sizes[group_of_cell] < math.ceil(2 / held_out)
        merged = np.where(small, -1 - batch, groups)
        description = (
            f"{params.batch_key} x {params.cell_type_key} "
            f"({len(np.unique(merged))} strata, {len(np.unique(groups[small]))} small "
            "groups merged into their batch)"
        )
        candidates.append((description, merged))
    candidates.append((params.batch_key, batch))
    candidates.append(("nothing (groups too small)", None))
    return candidates


def _assign_splits(obs: pd.DataFrame, params: DataProcessingParams) -> tuple[np.ndarray, str]:
    errors = []
    for description, strata in _strata_candidates(obs, params):
        try:
            return _split_positions(len(obs), strata, params.split), description
        except ValueError as error:
            errors.append(f"{description}: {error}")
    raise DataProcessingError(
        f"Cannot split {len(obs)} cells into train/val/test with data_processing.split "
        f"{params.split.model_dump()}: " + "; ".join(errors)
    )


def _split_positions(n_cells: int, strata: np.ndarray | None, split: SplitParams) -> np.ndarray:
    labels = np.full(n_cells, "train", dtype=object)
    held_out = split.val + split.test
    if held_out == 0:
        return labels
    positions = np.arange(n_cells)
    _, rest = train_test_split(
        positions, test_size=held_out, random_state=split.seed, stratify=strata
    )
    if split.val == 0 or split.test == 0:
        labels[rest] = "test" if split.val == 0 else "val"
        return labels
    val, test = train_test_split(
        rest,
        test_size=split.test / held_out,
        random_state=split.seed,
        stratify=None if strata is None else strata[rest],
    )
    labels[val] = "val"
    labels[test] = "test"
    return labels


def _box_plot(ax: Axes, values: list[np.ndarray], labels: list[str]) -> None:
    ax.boxplot(
        values,
        tick_labels=labels,
        flierprops={"marker": ".", "markersize": 2, "alpha": 0.4},
        medianprops={"color": "black"},
    )
    if len(labels) > 4:
        ax.tick_params(axis="x", labelrotation=45)
