"""Simulated single-cell RNA-seq raw counts that look like real data to scanpy.

The generative model, per cell ``c`` and gene ``g``:

- each cell type has an expression programme: a log-normal baseline shared by all types,
  plus a distinct set of up-regulated marker genes;
- each batch multiplies every gene by its own log-normal factor and draws library sizes
  from its own log-normal distribution;
- a few mitochondrial genes (``MT-`` prefix) take a small fraction of each cell's counts,
  except in a small share of low-quality cells, which have few counts and a high
  mitochondrial fraction, as damaged cells do;
- counts are negative-binomial, drawn as a gamma-Poisson mixture with gene-wise
  dispersion.

Pure numpy / scipy / anndata: no Kedro.
"""

from __future__ import annotations

import os
import string
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

# The 13 protein-coding genes of the human mitochondrial genome.
MITOCHONDRIAL_GENES = (
    "MT-ND1",
    "MT-ND2",
    "MT-CO1",
    "MT-CO2",
    "MT-ATP8",
    "MT-ATP6",
    "MT-CO3",
    "MT-ND3",
    "MT-ND4L",
    "MT-ND4",
    "MT-ND5",
    "MT-ND6",
    "MT-CYB",
)

# Fixed, not a parameter: the random streams are tied to chunks, so the chunk size is part
# of what makes a seed reproducible. 5,000 cells x 2,000 genes keeps a worker's scratch
# arrays around 300 MB.
_CELLS_PER_CHUNK = 5_000
# Each worker holds a few dense chunk-sized arrays; more than four buys little speed and
# costs memory on many-core machines.
_MAX_WORKERS = 4

_MARKER_SHARE = 0.03  # share of the nuclear genes that mark each cell type
_MARKER_LOG_FOLD_MEAN = 2.0  # ~7x up-regulation on average
_BASELINE_LOG_SD = 1.7  # spread of mean expression across genes
_BATCH_LIBRARY_LOG_SD = 0.35  # spread of the batches' median library sizes
_HEALTHY_MITO_BETA = (2.0, 38.0)  # mitochondrial fraction of healthy cells, mean 5%
_LOW_QUALITY_MITO_RANGE = (0.35, 0.8)
_LOW_QUALITY_LIBRARY_RANGE = (80.0, 400.0)


@dataclass(frozen=True)
class _GeneProgrammes:
    """Per-gene quantities shared by all cells."""

    nuclear_profiles: np.ndarray  # (types, batches, nuclear genes); each row sums to 1
    mito_profile: np.ndarray  # (mito genes,); sums to 1
    dispersion: np.ndarray  # (genes,) float32 gamma shape; smaller is noisier


@dataclass(frozen=True)
class _CellDesign:
    """Per-cell labels and expected totals."""

    batch: np.ndarray
    cell_type: np.ndarray
    library_size: np.ndarray
    mito_fraction: np.ndarray
    low_quality: np.ndarray


def simulate_counts(
    *,
    n_cells: int = 3000,
    n_genes: int = 2000,
    n_batches: int = 3,
    n_cell_types: int = 6,
    seed: int = 0,
    low_quality_fraction: float = 0.03,
    median_library_size: float = 2500.0,
    batch_effect_sd: float = 0.4,
) -> AnnData:
    """Simulate a raw-count AnnData with batches, cell types and low-quality cells.

    The result is the same for the same arguments on any machine and any number of cores.

    Args:
        n_cells: Number of cells (observations).
        n_genes: Number of genes (variables), mitochondrial genes included.
        n_batches: Number of batches, labelled ``batch_0``, ``batch_1``, ...
        n_cell_types: Number of cell types, labelled ``type_A``, ``type_B``, ...
        seed: Seed of every random draw.
        low_quality_fraction: Share of cells that are damaged: few counts and a
            mitochondrial fraction between 35% and 80%.
        median_library_size: Typical total counts of a healthy cell; each batch's median
            is drawn around it.
        batch_effect_sd: Standard deviation of the per-batch, per-gene log fold change.

    Returns:
        AnnData with ``X`` a CSR float32 matrix of integer counts; ``obs`` columns
        ``batch`` and ``cell_type`` (categoricals) and ``low_quality`` (bool, the ground
        truth); ``var_names`` ``GENE0001``... followed by ``MT-`` genes; the arguments in
        ``uns["simulation"]``.

    Raises:
        ValueError: If a count is not positive, there are fewer nuclear genes than cell
            types, or ``low_quality_fraction`` is outside [0, 1).
    """
    _check_arguments(n_cells, n_genes, n_batches, n_cell_types, low_quality_fraction)
    gene_seed, cell_seed, counts_seed = np.random.SeedSequence(seed).spawn(3)
    n_mito = _number_of_mito_genes(n_genes)
    programmes = _draw_gene_programmes(
        np.random.default_rng(gene_seed),
        n_nuclear=n_genes - n_mito,
        n_mito=n_mito,
        n_batches=n_batches,
        n_cell_types=n_cell_types,
        batch_effect_sd=batch_effect_sd,
    )
    cells = _draw_cell_design(
        np.random.default_rng(cell_seed),
        n_cells=n_cells,
        n_batches=n_batches,
        n_cell_types=n_cell_types,
        low_quality_fraction=low_quality_fraction,
        median_library_size=median_library_size,
    )
    counts = _sample_counts(programmes, cells, counts_seed)
    arguments = {
        "n_cells": n_cells,
        "n_genes": n_genes,
        "n_batches": n_batches,
        "n_cell_types": n_cell_types,
        "seed": seed,
        "low_quality_fraction": low_quality_fraction,
        "median_library_size": median_library_size,
        "batch_effect_sd": batch_effect_sd,
    }
    return AnnData(
        X=counts,
        obs=_cell_annotations(cells, n_batches, n_cell_types),
        var=pd.DataFrame(index=_gene_names(n_genes - n_mito, n_mito)),
        uns={"simulation": arguments},
    )


def _check_arguments(
    n_cells: int,
    n_genes: int,
    n_batches: int,
    n_cell_types: int,
    low_quality_fraction: float,
) -> None:
    for name, value in [
        ("n_cells", n_cells),
        ("n_genes", n_genes),
        ("n_batches", n_batches),
        ("n_cell_types", n_cell_types),
    ]:
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if n_genes - _number_of_mito_genes(n_genes) < n_cell_types:
        raise ValueError(
            f"n_genes={n_genes} leaves too few non-mitochondrial genes to give each of "
            f"the {n_cell_types} cell types a marker gene; raise n_genes"
        )
    if not 0 <= low_quality_fraction < 1:
        raise ValueError(f"low_quality_fraction must be in [0, 1), got {low_quality_fraction}")


def _number_of_mito_genes(n_genes: int) -> int:
    # Real panels have all 13; small test panels keep them to about 5% of the genes.
    return min(len(MITOCHONDRIAL_GENES), max(1, n_genes // 20))


def _draw_gene_programmes(
    rng: np.random.Generator,
    *,
    n_nuclear: int,
    n_mito: int,
    n_batches: int,
    n_cell_types: int,
    batch_effect_sd: float,
) -> _GeneProgrammes:
    baseline = rng.normal(0.0, _BASELINE_LOG_SD, n_nuclear)
    type_shift = _marker_log_folds(rng, n_nuclear, n_cell_types)
    batch_shift = rng.normal(0.0, batch_effect_sd, (n_batches, n_nuclear))
    log_rates = baseline + type_shift[:, None, :] + batch_shift[None, :, :]
    log_rates -= log_rates.max(axis=-1, keepdims=True)
    rates = np.exp(log_rates)
    mito_rates = rng.lognormal(0.0, 0.5, n_mito)
    # Gene-wise inverse overdispersion around 5, typical of UMI data.
    dispersion = rng.lognormal(np.log(5.0), 0.6, n_nuclear + n_mito)
    return _GeneProgrammes(
        nuclear_profiles=(rates / rates.sum(axis=-1, keepdims=True)).astype(np.float32),
        mito_profile=(mito_rates / mito_rates.sum()).astype(np.float32),
        dispersion=dispersion.astype(np.float32),
    )


def _marker_log_folds(rng: np.random.Generator, n_nuclear: int, n_cell_types: int) -> np.ndarray:
    """Up-regulation of each type's own markers: disjoint blocks of a gene permutation."""
    n_markers = max(1, round(_MARKER_SHARE * n_nuclear))
    order = rng.permutation(n_nuclear)
    log_folds = np.zeros((n_cell_types, n_nuclear))
    for cell_type in range(n_cell_types):
        # Blocks wrap around, and so overlap, only when types x markers exceeds the genes.
        markers = order[(cell_type * n_markers + np.arange(n_markers)) % n_nuclear]
        log_folds[cell_type, markers] = rng.gamma(4.0, _MARKER_LOG_FOLD_MEAN / 4.0, n_markers)
    return log_folds


def _draw_cell_design(
    rng: np.random.Generator,
    *,
    n_cells: int,
    n_batches: int,
    n_cell_types: int,
    low_quality_fraction: float,
    median_library_size: float,
) -> _CellDesign:
    batch = rng.choice(n_batches, size=n_cells, p=rng.dirichlet(np.full(n_batches, 10.0)))
    cell_type = _draw_cell_types(rng, batch, n_batches, n_cell_types)
    library_size = _draw_library_sizes(rng, batch, n_batches, median_library_size)
    mito_fraction = rng.beta(*_HEALTHY_MITO_BETA, size=n_cells)
    low_quality = np.zeros(n_cells, dtype=bool)
    damaged = rng.choice(n_cells, size=round(low_quality_fraction * n_cells), replace=False)
    low_quality[damaged] = True
    library_size[damaged] = rng.uniform(*_LOW_QUALITY_LIBRARY_RANGE, damaged.size)
    mito_fraction[damaged] = rng.uniform(*_LOW_QUALITY_MITO_RANGE, damaged.size)
    return _CellDesign(batch, cell_type, library_size, mito_fraction, low_quality)


def _draw_cell_types(
    rng: np.random.Generator, batch: np.ndarray, n_batches: int, n_cell_types: int
) -> np.ndarray:
    """Uneven type abundances (some types are rare), varying a little between batches."""
    overall = rng.dirichlet(np.full(n_cell_types, 2.0))
    cell_type = np.empty(batch.size, dtype=np.int64)
    for b in range(n_batches):
        in_batch = batch == b
        composition = rng.dirichlet(50.0 * overall + 1e-3)
        cell_type[in_batch] = rng.choice(n_cell_types, size=in_batch.sum(), p=composition)
    return cell_type


def _draw_library_sizes(
    rng: np.random.Generator, batch: np.ndarray, n_batches: int, median_library_size: float
) -> np.ndarray:
    """Log-normal totals whose median and spread differ between batches, as chemistries do."""
    batch_log_median = np.log(median_library_size) + rng.normal(
        0.0, _BATCH_LIBRARY_LOG_SD, n_batches
    )
    batch_log_sd = rng.uniform(0.25, 0.45, n_batches)
    return np.exp(rng.normal(batch_log_median[batch], batch_log_sd[batch]))


def _sample_counts(
    programmes: _GeneProgrammes, cells: _CellDesign, seed: np.random.SeedSequence
) -> sp.csr_matrix:
    n_cells = cells.batch.size
    starts = range(0, n_cells, _CELLS_PER_CHUNK)
    chunk_seeds = seed.spawn(len(starts))

    def sample_chunk(chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rows = slice(starts[chunk], min(starts[chunk] + _CELLS_PER_CHUNK, n_cells))
        means = _expected_counts(programmes, cells, rows)
        counts = _gamma_poisson(np.random.default_rng(chunk_seeds[chunk]), means, programmes)
        return _dense_to_csr_parts(counts)

    # numpy's samplers release the GIL, so threads use every core.
    workers = min(_MAX_WORKERS, os.cpu_count() or 1, len(starts))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(sample_chunk, range(len(starts))))
    n_genes = programmes.dispersion.size
    return _stack_csr_parts(parts, shape=(n_cells, n_genes))


def _expected_counts(programmes: _GeneProgrammes, cells: _CellDesign, rows: slice) -> np.ndarray:
    library = cells.library_size[rows].astype(np.float32)
    mito = cells.mito_fraction[rows].astype(np.float32)
    n_nuclear = programmes.nuclear_profiles.shape[-1]
    means = np.empty((library.size, programmes.dispersion.size), dtype=np.float32)
    nuclear = programmes.nuclear_profiles[cells.cell_type[rows], cells.batch[rows]]
    np.multiply(nuclear, (library * (1 - mito))[:, None], out=means[:, :n_nuclear])
    np.multiply(programmes.mito_profile, (library * mito)[:, None], out=means[:, n_nuclear:])
    return means


def _gamma_poisson(
    rng: np.random.Generator, means: np.ndarray, programmes: _GeneProgrammes
) -> np.ndarray:
    """Negative-binomial counts with the given means, as a gamma-Poisson mixture."""
    shape = programmes.dispersion
    rates = rng.standard_gamma(shape, size=means.shape, dtype=np.float32)
    rates *= means / shape
    return rng.poisson(rates)


def _dense_to_csr_parts(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # Much faster than scipy's dense-to-CSR conversion, which dominated the run time.
    flat_positions = np.flatnonzero(counts)
    data = counts.ravel()[flat_positions].astype(np.float32)
    columns = (flat_positions % counts.shape[1]).astype(np.int32)
    return data, columns, np.count_nonzero(counts, axis=1)


def _stack_csr_parts(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], shape: tuple[int, int]
) -> sp.csr_matrix:
    nnz = sum(part[0].size for part in parts)
    # scipy wants indices and indptr of one dtype; int32 halves memory whenever it fits.
    index_dtype = np.int32 if nnz <= np.iinfo(np.int32).max else np.int64
    data = np.concatenate([part[0] for part in parts])
    columns = np.concatenate([part[1] for part in parts], dtype=index_dtype)
    indptr = np.zeros(shape[0] + 1, dtype=index_dtype)
    np.cumsum(np.concatenate([part[2] for part in parts]), out=indptr[1:])
    return sp.csr_matrix((data, columns, indptr), shape=shape, copy=False)


def _cell_annotations(cells: _CellDesign, n_batches: int, n_cell_types: int) -> pd.DataFrame:
    batch_labels = [f"batch_{b}" for b in range(n_batches)]
    type_labels = [f"type_{_letters(t)}" for t in range(n_cell_types)]
    width = max(6, len(str(cells.batch.size - 1)))
    return pd.DataFrame(
        {
            "batch": pd.Categorical.from_codes(cells.batch, categories=batch_labels),
            "cell_type": pd.Categorical.from_codes(cells.cell_type, categories=type_labels),
            "low_quality": cells.low_quality,
        },
        index=[f"cell_{i:0{width}d}" for i in range(cells.batch.size)],
    )


def _letters(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA, like spreadsheet columns."""
    label = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        label = string.ascii_uppercase[remainder] + label
    return label


def _gene_names(n_nuclear: int, n_mito: int) -> list[str]:
    width = max(4, len(str(n_nuclear)))
    nuclear = [f"GENE{i:0{width}d}" for i in range(1, n_nuclear + 1)]
    return nuclear + list(MITOCHONDRIAL_GENES[:n_mito])
