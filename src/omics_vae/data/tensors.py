"""In-memory tensors of a count matrix and a batch loader that slices them by index.

The training loop of a small VAE on single-cell counts is bound by per-batch overhead as
much as by arithmetic, so this module keeps the whole data set as a handful of tensors
(on the training device when they fit) and builds each batch with one ``index_select``
per tensor. There is no per-cell Python and no ``DataLoader`` worker.

Every batch is a ``dict[str, torch.Tensor]`` with these fixed keys (see ``BATCH_KEYS``):

- ``"counts"``: ``(b, n_genes)`` float32 raw counts, always dense.
- ``"log_library"``: ``(b, 1)`` float32 log of each cell's total count.
- ``"log_factorial"``: ``(b,)`` float32 ``sum_g lgamma(counts + 1)``, the constant term of
  count likelihoods, precomputed once so that training never evaluates it.
- ``"bio"``: ``(b, n_bio)`` float32 one-hot biological covariates (may have 0 columns).
- ``"tech"``: ``(b, n_tech)`` float32 one-hot technical covariates (may have 0 columns).
- ``"batch_index"``: ``(b,)`` int64 code of the first technical key (zeros without one).

and, when the counts are integers and the tensors serve a likelihood, one more, the only
one whose length is not the number of cells:

- ``"count_keys"``: 1-D int32, one entry per non-zero count of the batch,
  ``gene * (COUNT_HISTOGRAM_BINS + 1) + min(count, COUNT_HISTOGRAM_BINS)`` (see
  ``CountKeys``).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch
from anndata import AnnData

from omics_vae.errors import ProjectError

logger = logging.getLogger(__name__)

COUNTS_KEY = "counts"
LOG_LIBRARY_KEY = "log_library"
LOG_FACTORIAL_KEY = "log_factorial"
BIO_KEY = "bio"
TECH_KEY = "tech"
BATCH_INDEX_KEY = "batch_index"
BATCH_KEYS = (COUNTS_KEY, LOG_LIBRARY_KEY, LOG_FACTORIAL_KEY, BIO_KEY, TECH_KEY, BATCH_INDEX_KEY)
COUNT_KEYS_KEY = "count_keys"
# Counts at or above this value share the last bin of the per-gene histogram that the NB
# likelihood is computed from (models.distributions.log_rising_factorial_sum).
COUNT_HISTOGRAM_BINS = 32

# Measured on 2 CPU cores (20,000 x 2,000 counts, batches of 128 and 1,024): a dense row
# gather costs 0.02 ms / 0.3 ms whatever the density, while gathering CSR rows and
# densifying them costs 3x (2 % non-zeros) to 10x (20 %) more. Sparse storage is therefore
# never faster on a CPU; it only saves memory. With int32 column indices a CSR matrix
# takes 8 bytes per non-zero against 4 bytes per entry dense, so ``"auto"`` chooses it
# only when the dense matrix would exceed the memory budget (``max_dense_bytes``, by
# default ``DENSE_SHARE_OF_MEMORY`` of the machine's) and CSR is the smaller of the two.
SPARSE_DENSITY_THRESHOLD = 0.5
# An eighth: beside the dense matrix, the processed AnnData holds the counts twice (the
# counts layer and the log-normalised X), and the model, Lightning and the other stages
# need the rest. At a quarter, 1,000,000 x 1,500 dense counts (5.8 GB) made training
# peak at 15.6 GiB on a 23.5 GiB machine.
DENSE_SHARE_OF_MEMORY = 0.125
# Rows converted at a time where a whole-matrix temporary would scale with the data.
CONVERSION_ROWS = 65_536
# Values converted at a time, likewise (64 MB of float32).
CONVERSION_VALUES = 1 << 24

# Share of the free accelerator memory the resident tensors may take; the rest is left to
# activations, optimiser state and the allocator's fragmentation.
DEVICE_MEMORY_FRACTION = 0.5

CountsFormat = Literal["auto", "dense", "sparse"]


class UnknownCategoryError(ProjectError, ValueError):
    """A covariate value was not among the categories the encoder was fitted on."""


@dataclass(frozen=True)
class CovariateEncoder:
    """One-hot encoding of categorical ``obs`` columns with a fixed, stored category order.

    Each key becomes a block of one-hot columns, in the order of ``categories``; blocks
    are concatenated in key order. The encoder is plain data (``to_dict`` gives
    JSON-serialisable lists of strings), so a model can store it in its hyperparameters
    and encode new cells exactly as it encoded its training cells.

    Attributes:
        categories: Ordered mapping of obs key to its ordered category labels (strings).
    """

    categories: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def fit(
        cls, obs: pd.DataFrame, keys: Sequence[str], unlabelled: str | None = None
    ) -> CovariateEncoder:
        """Learn the categories of ``keys`` from ``obs``.

        A categorical column keeps its declared category order (unused categories
        included, so a later split still finds them); any other column is converted to
        strings and sorted. Missing values and the ``unlabelled`` value are not
        categories: they stand for an unknown label (see ``one_hot``).

        Args:
            obs: Cell annotations, e.g. ``adata.obs``.
            keys: Columns to encode, in block order.
            unlabelled: A value that means "label unknown" (e.g. ``"unknown"``).

        Returns:
            The fitted encoder.

        Raises:
            KeyError: A key is not a column of ``obs``.
            ValueError: A column has no values at all.
        """
        categories = {}
        for key in keys:
            column = _column(obs, key, allow_missing=True)
            if isinstance(column.dtype, pd.CategoricalDtype):
                labels = [str(c) for c in column.cat.categories]
            else:
                labels = sorted(set(column.dropna().astype(str)))
            labels = [label for label in labels if label != unlabelled]
            if not labels:
                raise ValueError(f"obs column {key!r} has no values to encode")
            categories[key] = labels
        return cls(categories)

    @classmethod
    def from_dict(cls, categories: Mapping[str, Sequence[str]]) -> CovariateEncoder:
        """Rebuild an encoder from ``to_dict()`` output (e.g. a model's hyperparameters)."""
        return cls({str(k): [str(c) for c in v] for k, v in categories.items()})

    def to_dict(self) -> dict[str, list[str]]:
        """The category lists, JSON-serialisable."""
        return {key: list(labels) for key, labels in self.categories.items()}

    @property
    def keys(self) -> list[str]:
        """The encoded obs keys, in block order."""
        return list(self.categories)

    @property
    def block_sizes(self) -> list[int]:
        """Number of one-hot columns of each key."""
        return [len(labels) for labels in self.categories.values()]

    @property
    def n_columns(self) -> int:
        """Total number of one-hot columns."""
        return sum(self.block_sizes)

    def codes(
        self, obs: pd.DataFrame, unknown: Literal["error", "missing"] = "error"
    ) -> np.ndarray:
        """Integer category codes, one column per key.

        Args:
            obs: Cell annotations holding every key of the encoder.
            unknown: ``"error"``: every value must be a fitted category. ``"missing"``: a
                missing value, a value that is not a category (e.g. the unlabelled one)
                and a key absent from ``obs`` give code -1, an unknown label.

        Returns:
            ``(n_cells, n_keys)`` int64 array.

        Raises:
            KeyError: A key is missing from ``obs`` (``unknown="error"``).
            UnknownCategoryError: A value is not one of the fitted categories; the message
                names the key and the value (``unknown="error"``).
        """
        lenient = unknown == "missing"
        out = np.full((len(obs), len(self.categories)), -1, dtype=np.int64)
        for j, (key, labels) in enumerate(self.categories.items()):
            if lenient and key not in obs.columns:
                continue
            column = _column(obs, key, allow_missing=lenient)
            values = column.astype(str).to_numpy()
            codes = pd.Index(labels).get_indexer(values)
            codes[column.isna().to_numpy()] = -1
            if not lenient and (codes < 0).any():
                unknown_value = values[codes < 0][0]
                raise UnknownCategoryError(
                    f"obs[{key!r}] has value {unknown_value!r}, which is not one of the "
                    f"{len(labels)} categories this encoder was fitted on "
                    f"({_preview(labels)}). Encode the data with an encoder fitted on it, "
                    "or map the value to a known category."
                )
            out[:, j] = codes
        return out

    def one_hot(
        self, obs: pd.DataFrame, unknown: Literal["error", "missing"] = "error"
    ) -> np.ndarray:
        """One-hot blocks of every key, concatenated.

        Args:
            obs: Cell annotations holding every key of the encoder.
            unknown: As in ``codes``; an unknown label gives an all-zero block.

        Returns:
            ``(n_cells, n_columns)`` float32 array (0 columns for an empty encoder).
        """
        codes = self.codes(obs, unknown)
        out = np.zeros((len(obs), self.n_columns), dtype=np.float32)
        offsets = np.cumsum([0, *self.block_sizes])[:-1]
        for j, offset in enumerate(offsets):
            known = np.flatnonzero(codes[:, j] >= 0)
            out[known, offset + codes[known, j]] = 1.0
        return out


def _column(obs: pd.DataFrame, key: str, allow_missing: bool = False) -> pd.Series:
    if key not in obs.columns:
        raise KeyError(
            f"obs has no column {key!r}; available columns: {_preview(list(obs.columns))}"
        )
    column = obs[key]
    if not allow_missing and column.isna().any():
        raise ValueError(
            f"obs[{key!r}] has {int(column.isna().sum())} missing values; fill or drop "
            "those cells before encoding"
        )
    return column


def _preview(items: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (", ..." if len(items) > limit else "")


@dataclass(frozen=True)
class Placement:
    """Where resident tensors live and whether host copies are pinned.

    Attributes:
        storage: Device that holds the whole data set.
        pin_memory: Whether host storage is page-locked for asynchronous copies.
    """

    storage: torch.device
    pin_memory: bool


def plan_placement(
    nbytes: int, device: str | torch.device, memory_fraction: float = DEVICE_MEMORY_FRACTION
) -> Placement:
    """Decide whether a data set of ``nbytes`` can stay resident on ``device``.

    On a CPU the answer is always the CPU. On an accelerator the tensors stay on it when
    they take at most ``memory_fraction`` of its free memory; otherwise they stay in
    pinned host memory and each batch is copied asynchronously.

    Args:
        nbytes: Size of the tensors (``CountsTensors.nbytes``).
        device: The training device.
        memory_fraction: Share of the free device memory the data may take.

    Returns:
        The placement.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return Placement(torch.device("cpu"), pin_memory=False)
    free = _free_device_memory(device)
    if free is not None and nbytes <= memory_fraction * free:
        return Placement(device, pin_memory=False)
    logger.info(
        "Data (%.1f GiB) do not fit in %.0f%% of the free memory of %s; keeping them in "
        "pinned host memory and copying each batch.",
        nbytes / 1024**3,
        100 * memory_fraction,
        device,
    )
    return Placement(torch.device("cpu"), pin_memory=True)


def _free_device_memory(device: torch.device) -> int | None:
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return None


@dataclass(frozen=True)
class CountKeys:
    """The histogram keys of a count matrix's non-zeros, row by row (CSR order).

    A key is ``gene * (COUNT_HISTOGRAM_BINS + 1) + min(count, COUNT_HISTOGRAM_BINS)``; one
    ``bincount`` of a batch's keys is the per-gene histogram of its counts from which the
    NB likelihood takes its ``lgamma`` terms (``models.distributions``; zeros that a CSR
    matrix stores fall in bin 0, which it recomputes from the cells). Built once, they
    spare every training step five passes over its dense batch (clamp, convert, check,
    offset, count) and count only the non-zeros (10-30 % of single-cell counts).

    Attributes:
        indptr: ``(n_rows + 1,)`` int64 start of each row's keys.
        keys: ``(nnz,)`` int32 keys.
    """

    indptr: torch.Tensor
    keys: torch.Tensor

    @classmethod
    def from_matrix(cls, matrix: np.ndarray | sp.csr_matrix) -> CountKeys:
        """The keys of integer counts (see ``counts_are_integers``), dense or CSR."""
        if sp.issparse(matrix):
            return cls(
                torch.from_numpy(matrix.indptr.astype(np.int64, copy=False)),
                torch.from_numpy(_blocked_histogram_keys(matrix.indices, matrix.data)),
            )
        blocks = [
            sp.csr_matrix(matrix[start : start + CONVERSION_ROWS])
            for start in range(0, matrix.shape[0], CONVERSION_ROWS)
        ]
        row_lengths = [np.diff(block.indptr) for block in blocks]
        indptr = np.concatenate([[0], np.cumsum(np.concatenate(row_lengths or [[]]))])
        keys = [_blocked_histogram_keys(block.indices, block.data) for block in blocks]
        return cls(
            torch.from_numpy(indptr.astype(np.int64)),
            torch.from_numpy(np.concatenate(keys) if keys else np.empty(0, np.int32)),
        )

    @property
    def nbytes(self) -> int:
        """Bytes taken by both tensors."""
        return _nbytes(self.indptr) + _nbytes(self.keys)

    def to(self, device: torch.device, pin_memory: bool = False) -> CountKeys:
        """A copy on ``device`` (page-locked on the CPU with ``pin_memory``)."""
        moved = [tensor.to(device) for tensor in (self.indptr, self.keys)]
        if pin_memory and device.type == "cpu":
            moved = [tensor.pin_memory() for tensor in moved]
        return CountKeys(*moved)

    def gather(self, rows: torch.Tensor, pin_memory: bool = False) -> torch.Tensor:
        """The keys of the given rows, concatenated in their order."""
        positions = _csr_storage_positions(self.indptr, rows)[0]
        return _index_select(self.keys, positions, pin_memory)

    def range(self, start: int, stop: int) -> torch.Tensor:
        """The keys of rows ``start:stop`` (a view)."""
        return self.keys[int(self.indptr[start]) : int(self.indptr[stop])]


def counts_are_integers(matrix: np.ndarray | sp.csr_matrix) -> bool:
    """Whether every count is a whole number (checked in blocks: no full-size temporary)."""
    values = (matrix.data if sp.issparse(matrix) else matrix).reshape(-1)
    for start in range(0, values.size, CONVERSION_VALUES):
        block = values[start : start + CONVERSION_VALUES]
        if not np.array_equal(block, np.floor(block)):
            return False
    return True


def _blocked_histogram_keys(genes: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``_histogram_keys`` of CSR arrays, in blocks (no full-size temporary)."""
    keys = np.empty(counts.size, dtype=np.int32)
    for start in range(0, counts.size, CONVERSION_VALUES):
        stop = start + CONVERSION_VALUES
        block = _histogram_keys(
            torch.from_numpy(genes[start:stop]), torch.from_numpy(counts[start:stop])
        )
        keys[start:stop] = block.numpy()
    return keys


def _histogram_keys(genes: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``gene * (COUNT_HISTOGRAM_BINS + 1) + min(count, COUNT_HISTOGRAM_BINS)`` as int32,
    for non-zero counts and their genes' columns."""
    clamped = counts.clamp(max=COUNT_HISTOGRAM_BINS).to(torch.int32)
    return genes.to(torch.int32).mul(COUNT_HISTOGRAM_BINS + 1).add_(clamped)


@dataclass
class CountsTensors:
    """A count matrix and its per-cell covariates as tensors, ready to be sliced by index.

    Build it with ``from_anndata``; index it with ``gather`` (rows in any order) or
    ``slice`` (a contiguous range), both returning a batch dict with ``BATCH_KEYS``.

    Attributes:
        counts: ``(n, n_genes)`` float32 counts; dense, or a sparse CSR tensor with int32
            indices (see ``SPARSE_DENSITY_THRESHOLD``); its rows may be more than these
            cells (see ``rows``).
        log_library: ``(n, 1)`` log total count per cell.
        log_factorial: ``(n,)`` ``sum_g lgamma(counts + 1)`` per cell, or ``None`` when
            the tensors serve only encoding (the likelihood computes it if ever needed).
        bio: ``(n, n_bio)`` one-hot biological covariates.
        tech: ``(n, n_tech)`` one-hot technical covariates.
        batch_index: ``(n,)`` int64 code of the first technical key.
        bio_encoder: Encoder of the biological keys.
        tech_encoder: Encoder of the technical keys.
        obs_names: Cell names, in row order.
        split: Split label of each cell (``obs["split"]``), or ``None``.
        rows: The row of ``counts`` of each cell, or ``None`` when they are the rows in
            order: a subset (the training cells, the validation cells) shares the count
            matrix of all cells instead of copying it (at a million cells, gigabytes).
        integer_counts: Whether batches carry ``count_keys`` (integer counts, tensors
            built for a likelihood).
        count_keys: The histogram keys of dense ``counts``, row for row. Sparse counts
            derive them from their CSR arrays batch by batch instead (no stored copy).
    """

    counts: torch.Tensor
    log_library: torch.Tensor
    log_factorial: torch.Tensor | None
    bio: torch.Tensor
    tech: torch.Tensor
    batch_index: torch.Tensor
    bio_encoder: CovariateEncoder
    tech_encoder: CovariateEncoder
    obs_names: np.ndarray
    split: np.ndarray | None = None
    rows: torch.Tensor | None = None
    integer_counts: bool = False
    count_keys: CountKeys | None = None

    @classmethod
    def from_anndata(
        cls,
        adata: AnnData,
        counts_layer: str | None = "counts",
        *,
        bio_keys: Sequence[str] = (),
        tech_keys: Sequence[str] = (),
        encoders: Mapping[str, CovariateEncoder | Mapping[str, Sequence[str]]] | None = None,
        device: str | torch.device = "cpu",
        counts_format: CountsFormat = "auto",
        max_dense_bytes: int | None = None,
        split_key: str = "split",
        pin_memory: bool = False,
        log_factorial: bool = True,
    ) -> CountsTensors:
        """Convert an AnnData's raw counts and covariates into tensors.

        Args:
            adata: Cells x genes, raw counts in ``layers[counts_layer]`` (or ``X``).
            counts_layer: Layer with raw counts; ``None`` reads ``adata.X``.
            bio_keys: obs columns of biological covariates (may be empty).
            tech_keys: obs columns of technical covariates; the first is the batch.
            encoders: ``{"bio": ..., "tech": ...}`` encoders (or their ``to_dict()``) fitted
                earlier, e.g. a trained model's, so new data are encoded the same way. When
                given, the keys default to the encoders' keys.
            device: Device the tensors are placed on.
            counts_format: ``"dense"``, ``"sparse"`` (CSR) or ``"auto"`` (see
                ``choose_counts_format``).
            max_dense_bytes: The budget ``"auto"`` allows a dense matrix; ``None``: an
                eighth of the machine's memory (``default_max_dense_bytes``).
            split_key: obs column with split labels, kept for ``subset("train")``.
            pin_memory: Page-lock CPU tensors (only with an accelerator present).
            log_factorial: Precompute what the likelihood needs (each cell's
                ``sum_g lgamma(counts + 1)``, its constant, and the ``count_keys`` of
                integer counts): training and reconstruction errors need it; encoding
                cells does not (it took most of an embedding's time).

        Returns:
            The tensors.

        Raises:
            KeyError: The layer or an obs key is missing.
            ValueError: Counts are negative, a cell has no counts, or keys contradict the
                encoders.
            UnknownCategoryError: A covariate value is unknown to a given encoder.
        """
        bio_encoder, tech_encoder = _resolve_encoders(adata.obs, bio_keys, tech_keys, encoders)
        matrix = _counts_matrix(adata, counts_layer)
        library = _row_sums(matrix)
        if (library <= 0).any():
            raise ValueError(
                f"{int((library <= 0).sum())} cells have no counts; a count model needs "
                "at least one count per cell. Filter them (e.g. min_counts_per_cell) first."
            )
        tech_codes = tech_encoder.codes(adata.obs)
        batch_index = tech_codes[:, 0] if tech_codes.shape[1] else np.zeros(adata.n_obs, np.int64)
        split = adata.obs[split_key].astype(str).to_numpy() if split_key in adata.obs else None
        storage = choose_counts_format(matrix, counts_format, max_dense_bytes)
        integer_counts = log_factorial and counts_are_integers(matrix)
        tensors = cls(
            counts=_counts_tensor(matrix, storage),
            log_library=torch.from_numpy(np.log(library, dtype=np.float64)[:, None]).float(),
            log_factorial=torch.from_numpy(_log_factorial_sums(matrix)) if log_factorial else None,
            # Labels are optional: an unknown one is an all-zero block (an unlabelled cell).
            bio=torch.from_numpy(bio_encoder.one_hot(adata.obs, unknown="missing")),
            tech=torch.from_numpy(tech_encoder.one_hot(adata.obs)),
            batch_index=torch.from_numpy(np.ascontiguousarray(batch_index)),
            bio_encoder=bio_encoder,
            tech_encoder=tech_encoder,
            obs_names=np.asarray(adata.obs_names),
            split=split,
            integer_counts=integer_counts,
            count_keys=(
                CountKeys.from_matrix(matrix) if integer_counts and storage == "dense" else None
            ),
        )
        return tensors.to(device, pin_memory=pin_memory)

    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return int(self.counts.shape[0] if self.rows is None else self.rows.numel())

    @property
    def n_genes(self) -> int:
        """Number of genes."""
        return int(self.counts.shape[1])

    @property
    def is_sparse(self) -> bool:
        """Whether counts are stored as a sparse CSR tensor."""
        return self.counts.layout == torch.sparse_csr

    @property
    def device(self) -> torch.device:
        """Device of the tensors."""
        return self.counts.device

    @property
    def nbytes(self) -> int:
        """Bytes taken by all tensors."""
        keys = 0 if self.count_keys is None else self.count_keys.nbytes
        return keys + sum(_nbytes(t) for t in self._tensors().values())

    def __len__(self) -> int:
        return self.n_obs

    def _tensors(self) -> dict[str, torch.Tensor]:
        tensors = {
            COUNTS_KEY: self.counts,
            LOG_LIBRARY_KEY: self.log_library,
            LOG_FACTORIAL_KEY: self.log_factorial,
            BIO_KEY: self.bio,
            TECH_KEY: self.tech,
            BATCH_INDEX_KEY: self.batch_index,
        }
        return {name: tensor for name, tensor in tensors.items() if tensor is not None}

    def to(self, device: str | torch.device, pin_memory: bool = False) -> CountsTensors:
        """A copy on ``device`` (the same object's tensors when already there).

        Args:
            device: Target device.
            pin_memory: Page-lock the tensors when ``device`` is the CPU.

        Returns:
            The moved tensors.
        """
        device = torch.device(device)
        moved = {}
        for name, tensor in self._tensors().items():
            on_device = tensor.to(device)
            if pin_memory and device.type == "cpu" and not on_device.is_sparse_csr:
                on_device = on_device.pin_memory()
            moved[name] = on_device
        return replace(
            self,
            counts=moved[COUNTS_KEY],
            rows=None if self.rows is None else self.rows.to(device),
            log_library=moved[LOG_LIBRARY_KEY],
            log_factorial=moved.get(LOG_FACTORIAL_KEY),
            bio=moved[BIO_KEY],
            tech=moved[TECH_KEY],
            batch_index=moved[BATCH_INDEX_KEY],
            count_keys=None if self.count_keys is None else self.count_keys.to(device, pin_memory),
        )

    def subset(self, selection: str | Sequence[str] | np.ndarray | torch.Tensor) -> CountsTensors:
        """The cells of a split, or of a boolean mask.

        Args:
            selection: A split name (``"train"``), several split names, or a boolean mask
                of length ``n_obs``.

        Returns:
            A new ``CountsTensors`` with the selected rows (covariate encoders kept).

        Raises:
            ValueError: No split labels were loaded, or the mask has the wrong length.
        """
        mask = self._mask(selection)
        index = torch.from_numpy(np.flatnonzero(mask)).to(self.device)
        return self._cells(self._gather_covariates(index), mask, rows=self._stored_rows(index))

    def _mask(self, selection: str | Sequence[str] | np.ndarray | torch.Tensor) -> np.ndarray:
        if isinstance(selection, str):
            selection = [selection]
        if isinstance(selection, torch.Tensor):
            selection = selection.cpu().numpy()
        if isinstance(selection, np.ndarray) and selection.dtype == bool:
            if selection.shape != (self.n_obs,):
                raise ValueError(
                    f"mask has shape {selection.shape}, expected ({self.n_obs},) booleans"
                )
            return selection
        if self.split is None:
            raise ValueError(
                "these tensors have no split labels (obs['split'] was absent); pass a "
                "boolean mask instead of split names"
            )
        names = [str(s) for s in selection]
        unknown = sorted(set(names) - set(self.split))
        if unknown:
            logger.warning("No cell is in split(s) %s", unknown)
        return np.isin(self.split, names)

    def gather(self, index: torch.Tensor, pin_memory: bool = False) -> dict[str, torch.Tensor]:
        """The batch of the given rows, in their order.

        Args:
            index: 1-D int64 row indices on the tensors' device.
            pin_memory: Write the batch into page-locked memory (host storage only), ready
                for an asynchronous copy to an accelerator.

        Returns:
            A batch dict with ``BATCH_KEYS`` (and ``count_keys``); counts are dense.
        """
        batch = self._gather_covariates(index, pin_memory)
        rows = self._stored_rows(index)
        if self.is_sparse:
            counts, keys = _densify_csr_rows(self.counts, rows, pin_memory, self.integer_counts)
            batch[COUNTS_KEY] = counts
        else:
            batch[COUNTS_KEY] = _index_select(self.counts, rows, pin_memory)
            keys = None if self.count_keys is None else self.count_keys.gather(rows, pin_memory)
        if keys is not None:
            batch[COUNT_KEYS_KEY] = keys
        return batch

    def dense_chunks(self, rows_per_chunk: int) -> Iterator[CountsTensors]:
        """The cells in order, ``rows_per_chunk`` at a time, each chunk with dense counts.

        Sparse counts are cut into row ranges of the CSR arrays without copying them, and
        each range is densified by scipy in one call: for encoding many cells, faster
        than gathering batch by batch or slicing an AnnData view per chunk.
        """
        for start in range(0, self.n_obs, rows_per_chunk):
            stop = min(start + rows_per_chunk, self.n_obs)
            index = torch.arange(start, stop, device=self.device)
            if self.is_sparse and self.rows is None and self.device.type == "cpu":
                batch = self._gather_covariates(index)
                batch[COUNTS_KEY] = _dense_row_range(self.counts, start, stop)
            else:
                batch = self.gather(index)
            # Chunks serve encoding: without keys, a likelihood would count the dense rows.
            chunk = {"counts": batch[COUNTS_KEY], "rows": None, "count_keys": None}
            yield self._cells(batch, slice(start, stop), **chunk, integer_counts=False)

    def _cells(
        self, batch: dict[str, torch.Tensor], selection: np.ndarray | slice, **stored: Any
    ) -> CountsTensors:
        """These tensors restricted to the cells of ``batch`` (their covariates, gathered)
        and of ``selection`` (their names and splits); ``stored``: counts and rows."""
        return replace(
            self,
            **stored,
            log_library=batch[LOG_LIBRARY_KEY],
            log_factorial=batch.get(LOG_FACTORIAL_KEY),
            bio=batch[BIO_KEY],
            tech=batch[TECH_KEY],
            batch_index=batch[BATCH_INDEX_KEY],
            obs_names=self.obs_names[selection],
            split=None if self.split is None else self.split[selection],
        )

    def _stored_rows(self, index: torch.Tensor) -> torch.Tensor:
        """The rows of ``counts`` that hold the cells at ``index``."""
        return index if self.rows is None else self.rows.index_select(0, index)

    def _gather_covariates(
        self, index: torch.Tensor, pin_memory: bool = False
    ) -> dict[str, torch.Tensor]:
        return {
            name: _index_select(tensor, index, pin_memory)
            for name, tensor in self._tensors().items()
            if name != COUNTS_KEY
        }

    def slice(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        """The batch of rows ``start:stop`` (views of dense tensors that are all their
        stored rows, no copy).

        Args:
            start: First row.
            stop: One past the last row.

        Returns:
            A batch dict with ``BATCH_KEYS`` (and ``count_keys``); counts are dense.
        """
        if self.is_sparse or self.rows is not None:
            index = torch.arange(start, stop, device=self.device)
            return self.gather(index)
        batch = {name: tensor[start:stop] for name, tensor in self._tensors().items()}
        if self.count_keys is not None:
            batch[COUNT_KEYS_KEY] = self.count_keys.range(start, stop)
        return batch


def _resolve_encoders(
    obs: pd.DataFrame,
    bio_keys: Sequence[str],
    tech_keys: Sequence[str],
    encoders: Mapping[str, CovariateEncoder | Mapping[str, Sequence[str]]] | None,
) -> tuple[CovariateEncoder, CovariateEncoder]:
    resolved = []
    for role, keys in (("bio", list(bio_keys)), ("tech", list(tech_keys))):
        given = (encoders or {}).get(role)
        if given is None:
            resolved.append(CovariateEncoder.fit(obs, keys))
            continue
        encoder = (
            given if isinstance(given, CovariateEncoder) else CovariateEncoder.from_dict(given)
        )
        if keys and keys != encoder.keys:
            raise ValueError(
                f"{role}_keys {keys} differ from the given {role} encoder's keys "
                f"{encoder.keys}; leave {role}_keys empty to use the encoder's"
            )
        resolved.append(encoder)
    return resolved[0], resolved[1]


def _counts_matrix(adata: AnnData, counts_layer: str | None) -> np.ndarray | sp.csr_matrix:
    if counts_layer is None:
        matrix = adata.X
    elif counts_layer in adata.layers:
        matrix = adata.layers[counts_layer]
    else:
        raise KeyError(
            f"AnnData has no layer {counts_layer!r}; layers: {_preview(list(adata.layers))}. "
            "Pass counts_layer=None to read raw counts from X."
        )
    if matrix is None:
        raise ValueError("AnnData.X is empty; pass the layer that holds raw counts")
    # No copy where the stored matrix already is float32 (CSR): at a million cells every
    # copy of the counts is gigabytes.
    if sp.issparse(matrix):
        matrix = matrix if matrix.format == "csr" else matrix.tocsr()
        if matrix.dtype != np.float32:
            matrix = matrix.astype(np.float32)
        if not matrix.has_canonical_format:
            matrix = matrix.copy()
            matrix.sum_duplicates()
        values = matrix.data
    else:
        matrix = np.asarray(matrix, dtype=np.float32)
        values = matrix
    if values.size and values.min() < 0:
        raise ValueError("counts must be non-negative; is this layer normalised or scaled?")
    return matrix


def _row_sums(matrix: np.ndarray | sp.csr_matrix) -> np.ndarray:
    return np.asarray(matrix.sum(axis=1, dtype=np.float64)).ravel()


def _log_factorial_sums(matrix: np.ndarray | sp.csr_matrix) -> np.ndarray:
    # Row blocks keep the float64 temporaries small (24 bytes per non-zero at once would
    # be gigabytes for a million cells).
    sums = np.empty(matrix.shape[0], dtype=np.float32)
    for start in range(0, matrix.shape[0], CONVERSION_ROWS):
        stop = min(start + CONVERSION_ROWS, matrix.shape[0])
        sums[start:stop] = _block_log_factorial_sums(matrix[start:stop])
    return sums


def _block_log_factorial_sums(block: np.ndarray | sp.csr_matrix) -> np.ndarray:
    # lgamma(0 + 1) = 0, so only non-zeros contribute.
    if sp.issparse(block):
        values = torch.lgamma(torch.from_numpy(block.data.astype(np.float64)) + 1).numpy()
        rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
        return np.bincount(rows, weights=values, minlength=block.shape[0])
    return torch.lgamma(torch.from_numpy(block).double() + 1).sum(dim=1).numpy()


def choose_counts_format(
    matrix: np.ndarray | sp.spmatrix,
    counts_format: CountsFormat = "auto",
    max_dense_bytes: int | None = None,
) -> Literal["dense", "sparse"]:
    """Pick dense or CSR storage for a count matrix.

    ``"auto"`` keeps dense storage, which is faster to slice on every density measured,
    unless the dense matrix would exceed ``max_dense_bytes`` and CSR takes less memory
    (a density below ``SPARSE_DENSITY_THRESHOLD``).

    Args:
        matrix: The counts.
        counts_format: ``"auto"``, ``"dense"`` or ``"sparse"``.
        max_dense_bytes: The dense budget; ``None``: ``default_max_dense_bytes()``.

    Returns:
        ``"dense"`` or ``"sparse"``.
    """
    if counts_format in ("dense", "sparse"):
        return counts_format
    if counts_format != "auto":
        raise ValueError(
            f"counts_format must be 'auto', 'dense' or 'sparse', got {counts_format!r}"
        )
    n, g = matrix.shape
    dense_bytes = 4 * n * g
    budget = default_max_dense_bytes() if max_dense_bytes is None else max_dense_bytes
    if dense_bytes <= budget:
        return "dense"
    nnz = matrix.nnz if sp.issparse(matrix) else int(np.count_nonzero(matrix))
    density = nnz / max(n * g, 1)
    if density < SPARSE_DENSITY_THRESHOLD:
        logger.info(
            "Counts kept sparse (CSR, %.1f GB) and densified one batch at a time: dense "
            "they would take %.1f GB, over the %.1f GB budget (training.data.max_dense_gb)",
            8 * nnz / 1e9, dense_bytes / 1e9, budget / 1e9,
        )  # fmt: skip
        return "sparse"
    return "dense"


def default_max_dense_bytes() -> int:
    """An eighth of the memory this process may use (``DENSE_SHARE_OF_MEMORY``): the
    machine's, or its cgroup's limit when that is lower (a container, a Slurm job)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = Path("/sys/fs/cgroup/memory.max")
    try:
        text = limit.read_text().strip()
    except OSError:
        text = "max"
    if text.isdigit():
        total = min(total, int(text))
    return int(DENSE_SHARE_OF_MEMORY * total)


def _counts_tensor(
    matrix: np.ndarray | sp.csr_matrix, counts_format: Literal["dense", "sparse"]
) -> torch.Tensor:
    if counts_format == "dense":
        dense = matrix.toarray() if sp.issparse(matrix) else matrix
        return torch.from_numpy(np.ascontiguousarray(dense, dtype=np.float32))
    csr = matrix if sp.issparse(matrix) else sp.csr_matrix(matrix)
    # Shares the AnnData's arrays where their types already fit (no copy of the counts).
    return _csr_tensor(
        torch.from_numpy(csr.indptr.astype(np.int64, copy=False)),
        torch.from_numpy(csr.indices.astype(np.int32, copy=False)),
        torch.from_numpy(csr.data.astype(np.float32, copy=False)),
        csr.shape,
    )


def _csr_tensor(
    crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    with warnings.catch_warnings():
        # "Sparse CSR tensor support is in beta": only indexing is used here.
        warnings.simplefilter("ignore", UserWarning)
        # The indices come from scipy or from slicing a valid tensor: skip the checks.
        return torch.sparse_csr_tensor(crow, col, values, size=size, check_invariants=False)


def _csr_storage_positions(
    crow: torch.Tensor, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Storage position of every non-zero of the selected CSR rows, with the rows' lengths
    and their total."""
    starts = crow.index_select(0, index)
    lengths = crow.index_select(0, index + 1) - starts
    total = int(lengths.sum())
    offsets = torch.cumsum(lengths, 0) - lengths
    positions = torch.repeat_interleave(starts - offsets, lengths, output_size=total)
    positions += torch.arange(total, device=crow.device)
    return positions, lengths, total


def _csr_positions(
    crow: torch.Tensor, index: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Output row and storage position of every non-zero of the selected CSR rows."""
    positions, lengths, total = _csr_storage_positions(crow, index)
    rows = torch.repeat_interleave(
        torch.arange(index.numel(), device=crow.device), lengths, output_size=total
    )
    return rows, positions, total


def _index_select(tensor: torch.Tensor, index: torch.Tensor, pin_memory: bool) -> torch.Tensor:
    if not pin_memory:
        return tensor.index_select(0, index)
    out = torch.empty((index.numel(), *tensor.shape[1:]), dtype=tensor.dtype, pin_memory=True)
    return torch.index_select(tensor, 0, index, out=out)


def _dense_row_range(counts: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    crow = counts.crow_indices()
    first, last = int(crow[start]), int(crow[stop])
    block = sp.csr_matrix(
        (
            counts.values()[first:last].numpy(),
            counts.col_indices()[first:last].numpy(),
            (crow[start : stop + 1] - first).numpy(),
        ),
        shape=(stop - start, counts.shape[1]),
    )
    return torch.from_numpy(block.toarray())


def _densify_csr_rows(
    counts: torch.Tensor, index: torch.Tensor, pin_memory: bool = False, keys: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The selected rows dense, and with ``keys`` their non-zeros' histogram keys."""
    rows, positions, _ = _csr_positions(counts.crow_indices(), index)
    out = torch.zeros(index.numel(), counts.shape[1], device=counts.device, pin_memory=pin_memory)
    genes = counts.col_indices().index_select(0, positions)
    values = counts.values().index_select(0, positions)
    out.index_put_((rows, genes.long()), values)
    return out, _histogram_keys(genes, values) if keys else None


def _nbytes(tensor: torch.Tensor) -> int:
    if tensor.layout == torch.sparse_csr:
        parts = (tensor.crow_indices(), tensor.col_indices(), tensor.values())
        return sum(p.numel() * p.element_size() for p in parts)
    return tensor.numel() * tensor.element_size()


def _epoch_seed(seed: int, epoch: int) -> int:
    # Mixing (seed, epoch) through SeedSequence gives unrelated streams per epoch and lets
    # any epoch's order be recomputed without replaying the ones before it.
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0] >> 1)


def batch_bounds(
    n_obs: int, batch_size: int, drop_last: bool = False, merge_singleton: bool = True
) -> list[tuple[int, int]]:
    """Start and stop positions of the batches of one epoch.

    Args:
        n_obs: Number of cells.
        batch_size: Cells per batch.
        drop_last: Drop a final batch smaller than ``batch_size``.
        merge_singleton: When not dropping, merge a final batch of one cell into the
            previous batch (batch norm cannot normalise a single cell).

    Returns:
        ``(start, stop)`` pairs.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    n_full, rest = divmod(n_obs, batch_size)
    bounds = [(i * batch_size, (i + 1) * batch_size) for i in range(n_full)]
    if drop_last or rest == 0:
        return bounds
    if rest == 1 and merge_singleton and bounds:
        bounds[-1] = (bounds[-1][0], n_obs)
    else:
        bounds.append((n_full * batch_size, n_obs))
    return bounds


class InMemoryBatchLoader:
    """Batches of ``CountsTensors`` for Lightning's ``fit`` (train or val dataloader).

    Each epoch draws one permutation with ``torch.randperm`` from a generator seeded by
    ``(seed, epoch)`` and slices it into batches of indices; each batch is then one
    ``index_select`` per tensor. The data stay where they are placed: on the training
    device when they fit (``plan_placement``), else in pinned host memory with each
    batch copied asynchronously.

    The loader is resumable: ``state_dict()`` holds the seed, the epoch counter and the
    number of batches already yielded in the current epoch, and Lightning saves it in
    checkpoints and restores it on resume, so a resumed run sees the same order.

    Args:
        data: The tensors.
        batch_size: Cells per batch.
        shuffle: Draw a new order each epoch; ``False`` yields rows in order (validation).
        seed: Seed of the per-epoch permutations.
        drop_last: Drop a final batch smaller than ``batch_size``.
        merge_singleton: Merge a final one-cell batch into the previous batch.
        device: Device the batches must be on; ``None`` keeps the data's device. When it
            differs from the data's, ``plan_placement`` decides whether to move the data
            there once or to keep them on the host and copy batch by batch.
        pin_memory: Force host storage pinned (``True``) or pageable (``False``) when the
            data stay on the host; ``None`` follows ``plan_placement``.
    """

    def __init__(
        self,
        data: CountsTensors,
        batch_size: int = 128,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        merge_singleton: bool = True,
        device: str | torch.device | None = None,
        pin_memory: bool | None = None,
    ) -> None:
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.merge_singleton = merge_singleton
        self.device = data.device if device is None else torch.device(device)
        self.data = self._place(data, pin_memory)
        self.epoch = 0
        self._batches_yielded = 0
        self._resume = False
        self._bounds = batch_bounds(data.n_obs, self.batch_size, drop_last, merge_singleton)

    def _place(self, data: CountsTensors, pin_memory: bool | None) -> CountsTensors:
        if data.device == self.device:
            return data
        placement = plan_placement(data.nbytes, self.device)
        pin = placement.pin_memory if pin_memory is None else pin_memory
        pin = pin and torch.cuda.is_available()
        return data.to(placement.storage, pin_memory=pin)

    @property
    def n_obs(self) -> int:
        """Number of cells."""
        return self.data.n_obs

    def __len__(self) -> int:
        return len(self._bounds)

    def set_epoch(self, epoch: int) -> None:
        """Start the next iteration at the beginning of ``epoch``."""
        self.epoch = int(epoch)
        self._batches_yielded = 0
        self._resume = False

    def order(self, epoch: int | None = None) -> torch.Tensor:
        """The cell order of an epoch (``arange`` when not shuffling)."""
        epoch = self.epoch if epoch is None else epoch
        if not self.shuffle:
            return torch.arange(self.n_obs)
        generator = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        return torch.randperm(self.n_obs, generator=generator)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self._start_iteration()
        order = self.order().to(self.data.device) if self.shuffle else None
        for start, stop in self._bounds[self._batches_yielded :]:
            if order is None:
                batch = self.data.slice(start, stop)
            else:
                batch = self.data.gather(order[start:stop], pin_memory=self._pinned)
            self._batches_yielded += 1
            yield self._to_device(batch)

    def _start_iteration(self) -> None:
        # Lightning stops pulling after len(self) batches, so an epoch's end is only seen
        # when the next iteration starts: a started epoch is over by then, unless the
        # position was just restored from a checkpoint taken mid-epoch.
        resuming = self._resume and self._batches_yielded < len(self)
        if not resuming and self._batches_yielded > 0:
            self.epoch += 1
            self._batches_yielded = 0
        self._resume = False

    @property
    def _pinned(self) -> bool:
        return self.data.device != self.device and self.data.log_library.is_pinned()

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if self.data.device == self.device:
            return batch
        non_blocking = self._pinned
        return {k: t.to(self.device, non_blocking=non_blocking) for k, t in batch.items()}

    def state_dict(self) -> dict[str, int]:
        """Seed, epoch and batches already yielded in that epoch, for checkpoints.

        An iteration after ``load_state_dict`` continues the saved epoch's order from the
        saved position, or starts the following epoch if the saved one was complete.
        """
        return {"seed": self.seed, "epoch": self.epoch, "batches_yielded": self._batches_yielded}

    def load_state_dict(self, state_dict: Mapping[str, int]) -> None:
        """Restore ``state_dict()`` output; the next iteration resumes where it stopped."""
        self.seed = int(state_dict["seed"])
        self.epoch = int(state_dict["epoch"])
        self._batches_yielded = int(state_dict.get("batches_yielded", 0))
        self._resume = True
        if self._batches_yielded > len(self):
            raise ValueError(
                f"state has {self._batches_yielded} batches yielded, but an epoch has only "
                f"{len(self)}; was it saved for another batch size?"
            )
