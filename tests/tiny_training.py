"""Tiny processed data and fast training parameters, for the model tests (as fixtures in
``tests/conftest.py``) and for trainings that tests run in a process of their own."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import torch
import yaml

from omics_vae.data.simulate import simulate_counts

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def tiny_model_input() -> ad.AnnData:
    """240 cells x 50 genes shaped like the data_processing output."""
    adata = simulate_counts(
        n_cells=240, n_genes=50, n_batches=2, n_cell_types=3, seed=1, low_quality_fraction=0.0
    )
    adata.layers["counts"] = adata.X.copy()
    adata.X = np.log1p(adata.X)
    rng = np.random.default_rng(0)
    adata.obs["split"] = rng.choice(["train", "val", "test"], adata.n_obs, p=[0.7, 0.2, 0.1])
    adata.obs["split"] = adata.obs["split"].astype("category")
    adata.uns["data_processing"] = {"params": {"batch_key": "batch", "cell_type_key": "cell_type"}}
    return adata


def fast_training_params(checkpoint_dir: Path) -> dict[str, Any]:
    """The committed training parameters, shrunk to a few fast epochs."""
    base = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())
    params = copy.deepcopy(base["training"])
    params["trainer"].update(
        max_epochs=3, batch_size=32, eval_batch_size=64, enable_progress_bar=False
    )
    for hyperparameters in params["hyperparameters"].values():
        hyperparameters.update(n_hidden=16)
    params["checkpoint_dir"] = str(checkpoint_dir)
    return params


def assert_resumed_like_uninterrupted(resumed, history, uninterrupted, full_history) -> None:
    """A resumed run ends where the uninterrupted one did: same losses per epoch, same
    weights."""
    np.testing.assert_allclose(history["val/loss"], full_history["val/loss"], rtol=1e-5)
    np.testing.assert_allclose(history["train/loss"], full_history["train/loss"], rtol=1e-5)
    for a, b in zip(
        uninterrupted.state_dict().values(), resumed.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
