"""Tiny embeddings whose latent dimensions carry known signals, and the processed data
they were made from."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import yaml

from omics_vae.evaluation.preparation import prepare_evaluation_cells
from omics_vae.schemas.evaluation import EvaluationParams

PROJECT_ROOT = Path(__file__).resolve().parents[2]
N_CELLS = 300
BATCHES = ("b0", "b1", "b2")
CELL_TYPES = ("B", "NK", "T")
# Dimensions built to carry the signals; the others are noise.
TYPE_DIMS = (0, 1, 2)  # of z_i
BATCH_DIMS = (0, 1, 2)  # of z_s


def _obs() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "batch": pd.Categorical(np.tile(BATCHES, N_CELLS // 3)),
            "cell_type": pd.Categorical(np.repeat(CELL_TYPES, N_CELLS // 3)),
            "split": pd.Categorical(
                rng.choice(["train", "val", "test"], N_CELLS, p=[0.7, 0.2, 0.1])
            ),
        },
        index=[f"cell{i}" for i in range(N_CELLS)],
    )


def _one_hot(column: pd.Series) -> np.ndarray:
    return np.eye(column.cat.categories.size)[column.cat.codes]


@pytest.fixture
def model_input() -> ad.AnnData:
    """Processed cells whose expression separates both cell types and batches, as
    unintegrated data does: 30 type-marker genes, 30 batch-shifted genes."""
    obs = _obs()
    rng = np.random.default_rng(1)
    expression = np.abs(rng.normal(size=(N_CELLS, 60)))
    expression[:, :30] += 2 * np.kron(_one_hot(obs["cell_type"]), np.ones(10))
    expression[:, 30:] += 2 * np.kron(_one_hot(obs["batch"]), np.ones(10))
    adata = ad.AnnData(expression.astype(np.float32), obs=obs)
    adata.layers["counts"] = rng.poisson(5 * expression).astype(np.float32)
    return adata


@pytest.fixture
def embeddings(model_input: ad.AnnData) -> ad.AnnData:
    """An inVAE-like embedding: z_i dims 0-2 carry cell type, z_s dims 0-2 batch."""
    obs = model_input.obs.copy()
    rng = np.random.default_rng(2)
    z_i = rng.normal(size=(N_CELLS, 8))
    z_i[:, list(TYPE_DIMS)] += 4 * _one_hot(obs["cell_type"])
    z_s = rng.normal(size=(N_CELLS, 4))
    z_s[:, list(BATCH_DIMS)] += 4 * _one_hot(obs["batch"])
    obs["reconstruction_error"] = rng.gamma(5.0, size=N_CELLS)
    adata = ad.AnnData(
        np.zeros((N_CELLS, 0), dtype=np.float32),
        obs=obs,
        obsm={"X_invae": z_i.astype(np.float32), "X_invae_technical": z_s.astype(np.float32)},
    )
    adata.uns["embedding"] = {
        "model": "invae",
        "latent_key": "X_invae",
        "technical_key": "X_invae_technical",
        "batch_key": "batch",
        "cell_type_key": "cell_type",
        "supervised": True,
    }
    return adata


@pytest.fixture
def parameters() -> dict[str, Any]:
    """The committed evaluation parameters, Harmony off: it adds an embedding to every
    table and figure the unit tests count (the tests of Harmony turn it on)."""
    base = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text())
    parameters = copy.deepcopy(base["evaluation"])
    parameters["baselines"]["harmony"] = False
    return parameters


@pytest.fixture
def evaluation_cells(embeddings, model_input, parameters) -> ad.AnnData:
    return prepare_evaluation_cells(
        embeddings, model_input, EvaluationParams.model_validate(parameters)
    )


def validated(parameters: dict[str, Any]) -> EvaluationParams:
    """The ``evaluation`` block as the library takes it (the nodes validate it so)."""
    return EvaluationParams.model_validate(parameters)


OUTLIER = "cell42"


def with_outlier(embeddings: ad.AnnData) -> ad.AnnData:
    """The embeddings with one cell far out in the latent and badly reconstructed."""
    position = embeddings.obs_names.get_loc(OUTLIER)
    embeddings.obsm["X_invae"][position] = 25.0
    embeddings.obs.loc[OUTLIER, "reconstruction_error"] = 60.0
    return embeddings
