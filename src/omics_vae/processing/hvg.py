"""Highly variable genes, ranked within each batch large enough to rank them in, with
seurat_v3's LOESS span widened step by step where its fit fails.

A batch takes part in the per-batch ranking only when the flavor can rank genes in it:
it has at least two cells (one cell has no variance), a gene varies in it, and for
``seurat_v3`` enough genes vary for the LOESS fit of variance on mean. scikit-misc's LOESS does
not refuse a fit with fewer points than one window needs: it crashes the process with a
segmentation fault (a batch of one cell gives it no point at all), so this is checked
before scanpy runs: a span too narrow for the genes that vary in some batch is widened,
and batches that no span can fit are left out of the ranking only; their cells stay in
the data. The dispersion flavors' per-batch statistics fail (with an error) in ways the
data do not show beforehand; the batches that fail on their own are then left out.
``check_batches_can_be_ranked`` refuses data where no batch can take part, and the QC
step calls it before anything is saved.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse

from omics_vae.processing.annotations import (
    COUNTS_LAYER,
    lineage_record,
    subset,
    with_own_annotations,
)
from omics_vae.processing.errors import LOCAL_PARAMETERS_FILE, RAW_DATA, DataProcessingError
from omics_vae.schemas.data_processing import DataProcessingParams, HVGParams

logger = logging.getLogger(__name__)

# Wider LOESS spans for seurat_v3 to fall back on; 1.0 is a global quadratic fit.
_WIDER_SPANS = (0.5, 0.7, 1.0)
# A batch with fewer cells has no variance to rank genes by, in any flavor.
MIN_CELLS_PER_BATCH = 2
# Genes beyond the LOESS minimum: scanpy counts a gene as varying from its computed
# variance, which rounding could put at zero for a gene that barely varies.
_LOESS_MARGIN = 2
# Rows read at a time when counting varying genes (see n_varying_genes).
_VARYING_BLOCK_ROWS = 20_000
_EXAMPLES = 5


def select_highly_variable_genes(
    normalised: ad.AnnData, params: DataProcessingParams
) -> ad.AnnData:
    """Flags highly variable genes, ranked within each batch.

    ``seurat_v3`` reads the raw counts in ``layers["counts"]``; the dispersion-based
    flavors read the log-normalised ``X``. ``n_top_genes`` larger than the number of
    genes is capped, with a warning. seurat_v3's LOESS fit of variance on mean is
    singular in batches where many genes share a mean (few cells, low counts; scanpy
    issue #1504); the span is then widened step by step, with a warning. Batches in
    which the flavor cannot rank genes (``batches_left_out``) are left out of the
    ranking, with a warning; their cells stay in the data.

    Args:
        normalised: Output of ``normalise_counts``.
        params: The ``data_processing`` parameter block.

    Returns:
        A new AnnData with ``var["highly_variable"]`` and scanpy's HVG statistics;
        with ``hvg.subset`` only the highly variable genes are kept (a copy).

    Raises:
        DataProcessingError: No batch can take part in the ranking, or the flavor's fit
            fails (seurat_v3: even with the widest span).
    """
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
    selected = with_own_annotations(normalised)
    # scanpy ranks genes in every category of the batch, cells or none.
    batches = selected.obs[params.batch_key].astype("category")
    selected.obs[params.batch_key] = batches.cat.remove_unused_categories()
    left_out = check_batches_can_be_ranked(
        _hvg_input(selected, hvg), selected.obs[params.batch_key], params
    )
    try:
        selected, span = _rank(selected, params, n_top_genes, left_out)
    except _BatchesFailed as failed:
        # The dispersion flavors' per-batch statistics can fail in ways the data do not
        # show beforehand (cell_ranger's mean bins, all-NaN dispersions): leave out the
        # batches that fail on their own, and rank in the others.
        left_out = {**left_out, **failed.batches}
        if selected.obs[params.batch_key].nunique() == len(left_out):
            raise DataProcessingError(
                f"scanpy's {hvg.flavor} ranking of highly variable genes fails in every "
                f"batch of obs['{params.batch_key}'] ({failed.reason}): {_describe(left_out)}"
                f". Set data_processing.hvg.flavor: seurat_v3 in {LOCAL_PARAMETERS_FILE}, or "
                f"merge small batches in {RAW_DATA}."
            ) from None
        selected, span = _rank(selected, params, n_top_genes, left_out)
    n_highly_variable = int(selected.var["highly_variable"].sum())
    lineage_record(selected).update(
        n_highly_variable_genes=n_highly_variable,
        hvg_span=span,
        hvg_batches_left_out={str(name): n_cells for name, (n_cells, _) in left_out.items()},
    )
    logger.info(
        "Flagged %d highly variable genes (%s, batch key %r)%s.",
        n_highly_variable,
        hvg.flavor,
        params.batch_key,
        "; kept only those" if hvg.subset else "",
    )
    return selected


class _BatchesFailed(Exception):
    """The batches in which a dispersion flavor's ranking fails on its own."""

    def __init__(self, batches: dict[Any, tuple[int, str]], reason: str) -> None:
        super().__init__(reason)
        self.batches = batches
        self.reason = reason


def _rank(
    selected: ad.AnnData,
    params: DataProcessingParams,
    n_top_genes: int,
    left_out: dict[Any, tuple[int, str]],
) -> tuple[ad.AnnData, float | None]:
    """Runs the ranking on the batches not ``left_out``; returns the data and the span."""
    hvg, batch_key = params.hvg, params.batch_key
    if left_out:
        _warn_left_out(left_out, params)
        ranked = _cells_of_ranked_batches(selected, batch_key, left_out)
        span = _highly_variable_genes(ranked, hvg, n_top_genes, batch_key)
        for column in ranked.var.columns:
            selected.var[column] = ranked.var[column].to_numpy()
        selected.uns["hvg"] = ranked.uns["hvg"]
    else:
        span = _highly_variable_genes(selected, hvg, n_top_genes, batch_key)
    if hvg.subset:
        # Not scanpy's subset=True, which copies through an AnnData view (twice the
        # subset's memory at its peak).
        selected = subset(selected, genes=selected.var["highly_variable"].to_numpy())
    return selected, span


def batches_left_out(counts: Any, batches: pd.Series, hvg: HVGParams) -> dict[Any, tuple[int, str]]:
    """The batches in which ``hvg.flavor`` cannot rank genes, each with its cells and why.

    Args:
        counts: The matrix the flavor reads (raw counts for seurat_v3, log-normalised
            values for the others), cells in the order of ``batches``.
        batches: The batch of each cell.
        hvg: The ``data_processing.hvg`` block.

    Returns:
        ``{batch: (n_cells, reason)}``, in the order the batches first appear.
    """
    codes, names = pd.factorize(batches.to_numpy(), use_na_sentinel=True)
    # Batches that a wider span can fit stay: the ranking widens it (``_safe_spans``).
    needed = loess_genes_needed(_WIDER_SPANS[-1])
    left_out: dict[Any, tuple[int, str]] = {}
    for code, name in enumerate(names):
        rows = np.flatnonzero(codes == code)
        if len(rows) < MIN_CELLS_PER_BATCH:
            left_out[name] = (len(rows), f"{len(rows)} cell: no variance to rank genes by")
            continue
        varying = n_varying_genes(counts, rows)
        if varying == 0:
            left_out[name] = (len(rows), f"{len(rows)} cells in which no gene varies")
        elif hvg.flavor == "seurat_v3" and varying < needed:
            left_out[name] = (
                len(rows),
                f"{len(rows)} cells in which {varying} genes vary; seurat_v3's LOESS fit "
                f"needs at least {needed}",
            )
    return left_out


def check_batches_can_be_ranked(
    counts: Any, batches: pd.Series, params: DataProcessingParams
) -> dict[Any, tuple[int, str]]:
    """``batches_left_out``, refused when it leaves out every batch.

    Raises:
        DataProcessingError: No batch has enough cells (and varying genes) for the flavor;
            the message names the batches, the keys and the fix.
    """
    left_out = batches_left_out(counts, batches, params.hvg)
    n_batches = batches.nunique(dropna=True)
    if n_batches and len(left_out) == n_batches:
        raise DataProcessingError(
            f"No batch of obs['{params.batch_key}'] (data_processing.batch_key, {n_batches} "
            f"batches in {RAW_DATA}) has enough cells to rank highly variable genes in "
            f"(data_processing.hvg.flavor: {params.hvg.flavor}): {_describe(left_out)}. Set "
            f"data_processing.batch_key in {LOCAL_PARAMETERS_FILE} to the obs column of the "
            f"technical batch (batches of at least {MIN_CELLS_PER_BATCH} cells), or relax "
            "the data_processing.qc thresholds if they removed most cells."
        )
    return left_out


def loess_genes_needed(span: float) -> int:
    """Varying genes a batch needs for seurat_v3's LOESS fit with ``span`` (and wider).

    The fit's window holds ``floor(span * points)`` genes; scikit-misc crashes the
    process when that is 0, and refuses (an error the span widening answers) above.
    """
    return math.ceil(1.0 / span) + _LOESS_MARGIN


def n_varying_genes(counts: Any, rows: np.ndarray | None = None) -> int:
    """Genes whose values are not all the same in the ``rows`` of ``counts`` (cells x
    genes; ``None``: every row).

    Read ``_VARYING_BLOCK_ROWS`` rows at a time: copying a batch's rows whole, and
    scipy's column maximum converting them to CSC, took two copies of a third of a
    million-cell matrix.
    """
    rows = np.arange(counts.shape[0]) if rows is None else np.asarray(rows)
    if len(rows) < MIN_CELLS_PER_BATCH:
        return 0
    high = low = None
    for start in range(0, len(rows), _VARYING_BLOCK_ROWS):
        block = counts[rows[start : start + _VARYING_BLOCK_ROWS]]
        if sparse.issparse(block):
            block_high = block.max(axis=0).toarray().ravel()
            block_low = block.min(axis=0).toarray().ravel()
        else:
            values = np.asarray(block)
            block_high, block_low = values.max(axis=0), values.min(axis=0)
        high = block_high if high is None else np.maximum(high, block_high)
        low = block_low if low is None else np.minimum(low, block_low)
    return int(np.count_nonzero(high != low))


def _hvg_input(adata: ad.AnnData, hvg: HVGParams) -> Any:
    return adata.layers[COUNTS_LAYER] if hvg.flavor == "seurat_v3" else adata.X


def _describe(left_out: dict[Any, tuple[int, str]]) -> str:
    described = [f"'{name}' ({reason})" for name, (_, reason) in left_out.items()]
    if len(described) > _EXAMPLES:
        described = [*described[:_EXAMPLES], f"... and {len(described) - _EXAMPLES} more"]
    return "; ".join(described)


def _warn_left_out(left_out: dict[Any, tuple[int, str]], params: DataProcessingParams) -> None:
    logger.warning(
        "%d batch(es) of obs['%s'] left out of the ranking of highly variable genes "
        "(data_processing.hvg.flavor: %s), their cells kept: %s. Merge small batches in %s "
        "to rank genes in them too.",
        len(left_out),
        params.batch_key,
        params.hvg.flavor,
        _describe(left_out),
        RAW_DATA,
    )


def _cells_of_ranked_batches(
    adata: ad.AnnData, batch_key: str, left_out: dict[Any, tuple[int, str]]
) -> ad.AnnData:
    """The cells of the batches that take part in the ranking: what scanpy reads only."""
    keep = ~adata.obs[batch_key].isin(list(left_out)).to_numpy()
    ranked = ad.AnnData(
        X=adata.X[keep],
        obs=adata.obs.loc[keep, [batch_key]].copy(),
        var=pd.DataFrame(index=adata.var_names),
        layers={COUNTS_LAYER: adata.layers[COUNTS_LAYER][keep]}
        if COUNTS_LAYER in adata.layers
        else None,
        uns={key: adata.uns[key] for key in ("log1p",) if key in adata.uns},
    )
    ranked.obs[batch_key] = ranked.obs[batch_key].astype(str).astype("category")
    return ranked


def _highly_variable_genes(
    adata: ad.AnnData, hvg: HVGParams, n_top_genes: int, batch_key: str
) -> float | None:
    """Runs scanpy's HVG selection in place; returns the LOESS span used by seurat_v3."""
    options = {
        "flavor": hvg.flavor,
        "n_top_genes": n_top_genes,
        "batch_key": batch_key,
    }
    if hvg.flavor != "seurat_v3":
        try:
            sc.pp.highly_variable_genes(adata, **options)
        except (ValueError, IndexError) as error:  # cell_ranger's bins, all-NaN dispersions
            failing = _failing_batches(adata, hvg, batch_key)
            if failing:
                raise _BatchesFailed(failing, _reason(error)) from None
            raise DataProcessingError(
                f"scanpy's {hvg.flavor} ranking of highly variable genes failed "
                f"({_reason(error)}). Set data_processing.hvg.flavor: seurat_v3 in "
                f"{LOCAL_PARAMETERS_FILE}."
            ) from None
        return None
    spans = _safe_spans(adata, hvg, batch_key)
    failure: ValueError | None = None
    reason = ""
    for span in spans:
        try:
            # The fit fails before scanpy writes anything, so a retry starts clean.
            sc.pp.highly_variable_genes(adata, layer=COUNTS_LAYER, span=span, **options)
        except ValueError as error:  # skmisc reports a failed LOESS fit as ValueError
            failure = error
            reason = _reason(error)
            continue
        if span != hvg.span:
            logger.warning(
                "seurat_v3's LOESS fit failed or could not run with data_processing.hvg.span "
                "= %g (%s); used span %g. Set data_processing.hvg.span: %g in %s to skip the "
                "failing attempts.",
                hvg.span,
                reason or "too narrow for the genes that vary in a batch",
                span,
                span,
                LOCAL_PARAMETERS_FILE,
            )
        return span
    raise DataProcessingError(
        f"seurat_v3's LOESS fit failed for every span in {spans} ({reason}); a batch of "
        f"obs['{batch_key}'] may have too few cells (smallest: "
        f"{_smallest_batches(adata, batch_key)}). Set data_processing.hvg.flavor: seurat in "
        f"{LOCAL_PARAMETERS_FILE}, or merge small batches in {RAW_DATA}."
    ) from failure


def _safe_spans(adata: ad.AnnData, hvg: HVGParams, batch_key: str) -> list[float]:
    """The spans to try, narrowest first, without those whose LOESS window would hold
    no gene in some batch (scikit-misc crashes the process there, see the module)."""
    spans = [hvg.span, *(span for span in _WIDER_SPANS if span > hvg.span)]
    batches = adata.obs[batch_key].to_numpy()
    fewest = min(
        n_varying_genes(adata.layers[COUNTS_LAYER], np.flatnonzero(batches == name))
        for name in pd.unique(batches)
    )
    safe = [span for span in spans if loess_genes_needed(span) <= fewest]
    if len(safe) < len(spans):
        logger.info(
            "seurat_v3: LOESS spans %s skipped: a batch has only %d genes that vary.",
            [span for span in spans if span not in safe],
            fewest,
        )
    return safe


def _failing_batches(
    adata: ad.AnnData, hvg: HVGParams, batch_key: str
) -> dict[Any, tuple[int, str]]:
    """The batches whose ranking fails on its own (a dispersion flavor), with why.

    Each batch is ranked alone the way scanpy ranks it among others (its per-batch
    path, which leaves out the genes the batch does not express).
    """
    failing = {}
    for name in pd.unique(adata.obs[batch_key]):
        cells = (adata.obs[batch_key] == name).to_numpy()
        alone = ad.AnnData(
            X=adata.X[cells],
            obs=pd.DataFrame({batch_key: np.full(int(cells.sum()), "alone")}),
            uns={key: adata.uns[key] for key in ("log1p",) if key in adata.uns},
        )
        try:
            sc.pp.highly_variable_genes(
                alone, flavor=hvg.flavor, n_top_genes=1, batch_key=batch_key, inplace=False
            )
        except (ValueError, IndexError) as error:
            failing[name] = (int(cells.sum()), f"{int(cells.sum())} cells: {_reason(error)}")
    return failing


def _reason(error: Exception) -> str:
    reason = error.args[0] if error.args else error
    reason = reason.decode().strip() if isinstance(reason, bytes) else str(reason)
    return reason.splitlines()[0] if reason else type(error).__name__


def _smallest_batches(adata: ad.AnnData, batch_key: str) -> str:
    sizes = adata.obs[batch_key].value_counts(sort=True, ascending=True)
    sizes = sizes[sizes > 0].head(3)
    return ", ".join(f"'{name}' {count} cells" for name, count in sizes.items())
