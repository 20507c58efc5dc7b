"""The raw-counts check: every value of the counts matrix, read in bounded blocks.

Dense (numpy, backed h5py, dask), CSR and CSC matrices, in memory or backed, are read a
few million values at a time, so the check's temporary arrays stay small whatever the
size of the matrix. A value that is not a non-negative integer is reported with its
kind, how many there are, and the cell and gene of the first one; the message says which
matrix of the raw data does hold counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anndata as ad
import numpy as np
from scipy import sparse

from omics_vae.processing.errors import (
    LOCAL_CATALOG_FILE,
    LOCAL_PARAMETERS_FILE,
    DataProcessingError,
)

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
# numpy kinds that can hold counts: booleans, integers, floats. Complex numbers, strings,
# objects and dates cannot, whatever their values.
_NUMBER_KINDS = "biuf"


def counts_matrix(adata: ad.AnnData, layer: str | None) -> Any:
    """The matrix of the raw counts: ``adata.X`` or ``adata.layers[layer]``."""
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


def check_counts(adata: ad.AnnData, counts: Any, layer: str | None) -> None:
    """Refuses ``counts`` (of ``adata``, from ``layer``) unless every value is a raw count.

    Raises:
        DataProcessingError: Naming the kind and number of bad values, the cell and gene
            of the first one, and the matrices of ``adata`` that do hold counts.
    """
    where = "adata.X" if layer is None else f"layers['{layer}']"
    if not _holds_numbers(counts):
        raise DataProcessingError(
            f"The counts in {where} of catalog entry raw_counts (data_processing.counts_layer: "
            f"{layer or 'null'}) {_stored_as(counts)}, which cannot hold counts; the models need"
            f" raw, non-negative integer counts (stored as integers or floats). "
            f"{_counts_fix(adata, layer)}"
        )
    bad = _bad_counts(counts)
    if bad is None:
        return
    raise DataProcessingError(
        f"The counts in {where} of catalog entry raw_counts (data_processing.counts_layer: "
        f"{layer or 'null'}) contain {_describe_bad_counts(bad, adata)}; the models need "
        f"raw, non-negative integer counts. {_counts_fix(adata, layer)}"
    )


def as_float32_csr(matrix: Any) -> sparse.csr_matrix:
    """``matrix`` as an in-memory float32 CSR matrix; itself when it already is one."""
    if isinstance(matrix, _BACKED_SPARSE):
        matrix = matrix.to_memory()
    if isinstance(matrix, sparse.csr_matrix) and matrix.dtype == np.float32:
        return matrix
    if sparse.issparse(matrix):
        return sparse.csr_matrix(matrix, dtype=np.float32)
    return sparse.csr_matrix(np.asarray(matrix, dtype=np.float32))


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


def _dtype(matrix: Any) -> np.dtype | None:
    dtype = getattr(matrix, "dtype", None)
    return None if dtype is None else np.dtype(dtype)


def _stored_as(matrix: Any) -> str:
    dtype = _dtype(matrix)
    return "are missing (no matrix)" if dtype is None else f"are stored as {dtype}"


def _holds_numbers(matrix: Any) -> bool:
    """Whether the matrix's type can hold counts (checked before reading any value)."""
    dtype = _dtype(matrix)
    return dtype is not None and dtype.kind in _NUMBER_KINDS


def _holds_counts(matrix: Any) -> bool:
    if not _holds_numbers(matrix):
        return False
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
