"""Tiny synthetic single-cell data for the model tests."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from omics_vae.data.tensors import CountsTensors


def synthetic_adata(n_cells: int = 192, n_genes: int = 40, seed: int = 0) -> ad.AnnData:
    """NB counts with a cell-type programme and a batch factor, split train/val."""
    rng = np.random.default_rng(seed)
    cell_type = rng.integers(0, 3, n_cells)
    batch = rng.integers(0, 2, n_cells)
    programme = np.exp(rng.normal(0.0, 1.0, (3, n_genes)))
    batch_factor = np.exp(rng.normal(0.0, 0.3, (2, n_genes)))
    library = np.exp(rng.normal(0.0, 0.3, n_cells))[:, None]
    mean = 2.0 * library * programme[cell_type] * batch_factor[batch]
    counts = rng.negative_binomial(3.0, 3.0 / (3.0 + mean)).astype(np.float32)
    counts[:, 0] += 1
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical([f"type{t}" for t in cell_type]),
            "batch": pd.Categorical([f"batch{b}" for b in batch]),
            "split": np.where(np.arange(n_cells) % 4 == 0, "val", "train"),
        },
        index=[f"cell{i}" for i in range(n_cells)],
    )
    adata = ad.AnnData(X=np.log1p(counts), obs=obs)
    adata.layers["counts"] = sp.csr_matrix(counts)
    return adata


@pytest.fixture
def adata() -> ad.AnnData:
    return synthetic_adata()


@pytest.fixture
def tensors(adata: ad.AnnData) -> CountsTensors:
    return CountsTensors.from_anndata(adata, "counts", bio_keys=["cell_type"], tech_keys=["batch"])
