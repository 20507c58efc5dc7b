"""Lineage facts: content fingerprints of data and the versions of the software in use."""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Sequence
from importlib.metadata import version

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData


def fingerprint_anndata(adata: AnnData, layer: str | None = "counts") -> str:
    """A short hash of the cells, genes, split and count values of ``adata``.

    Two AnnData objects share a fingerprint exactly when they hold the same cells in the
    same order, the same genes, the same train/val/test assignment and the same counts.

    Args:
        adata: The data.
        layer: Layer whose values are hashed; ``None`` hashes ``X``.

    Returns:
        16 hexadecimal characters of a BLAKE2b digest.
    """
    digest = hashlib.blake2b(digest_size=8)
    for names in (adata.obs_names, adata.var_names):
        digest.update("\x1f".join(map(str, names)).encode())
    if "split" in adata.obs:
        digest.update("\x1f".join(adata.obs["split"].astype(str)).encode())
    matrix = adata.X if layer is None else adata.layers[layer]
    _update_with_matrix(digest, matrix)
    return digest.hexdigest()


def fingerprint_values(values: Sequence[object]) -> str:
    """A short hash of a column's values in order (labels, batches); missing values hash
    alike whatever their kind (NaN, None)."""
    digest = hashlib.blake2b(digest_size=8)
    text = pd.Series(values, dtype="object").map(lambda v: "\x00" if pd.isna(v) else str(v))
    digest.update("\x1f".join(text).encode())
    return digest.hexdigest()


def _update_with_matrix(digest, matrix) -> None:
    if sp.issparse(matrix):
        csr = sp.csr_matrix(matrix)
        csr.sort_indices()
        for part in (csr.indptr, csr.indices, csr.data):
            # The array's own buffer: .tobytes() would copy gigabytes for a million cells.
            digest.update(np.ascontiguousarray(part))
    else:
        digest.update(np.ascontiguousarray(matrix))
    digest.update(str(matrix.shape).encode())


# Packages whose versions decide what a model or an embedding is.
TRACKED_PACKAGES = ("omics-vae", "torch", "lightning", "anndata", "scanpy", "kedro", "mlflow")


def environment_versions() -> dict[str, str]:
    """Python and the tracked packages' versions, for model cards and info records."""
    return {
        "python": platform.python_version(),
        **{package: version(package) for package in TRACKED_PACKAGES},
    }
