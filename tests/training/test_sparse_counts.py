"""Counts kept sparse train the same model as dense counts: training.data decides only
how the cells sit in memory."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp

from omics_vae.training.identity import training_fingerprint
from omics_vae.training.single_cell import train_model
from tests.conftest import validated_block
from tests.tiny_training import assert_resumed_like_uninterrupted


def _with_data(params: dict, **data) -> dict:
    params = copy.deepcopy(params)
    params["data"] = {**(params.get("data") or {}), **data}
    return params


@pytest.mark.parametrize("model", ["invae", "scvi_vae"])
def test_sparse_counts_train_the_model_dense_counts_train(
    model_input, training_params, model, caplog
):
    # Thinned to a third of the entries, so CSR is the smaller layout; every cell keeps
    # a count.
    counts = sp.csr_matrix(model_input.layers["counts"]).toarray()
    counts *= np.random.default_rng(0).random(counts.shape) < 0.3
    counts[:, 0] = np.maximum(counts[:, 0], 1)
    model_input.layers["counts"] = sp.csr_matrix(counts)
    params = {**training_params, "model": model}
    dense, dense_history, _ = train_model(model_input, _with_data(params, counts_format="dense"))
    # "auto" with a budget smaller than the dense matrix chooses CSR.
    with caplog.at_level("INFO", logger="omics_vae.data.tensors"):
        sparse, sparse_history, _ = train_model(
            model_input, _with_data(params, counts_format="auto", max_dense_gb=1e-6)
        )
    assert "Counts kept sparse" in caplog.text

    assert_resumed_like_uninterrupted(sparse, sparse_history, dense, dense_history)


def test_memory_layout_is_not_part_of_the_training_identity(model_input, training_params):
    fingerprints = {
        training_fingerprint(model_input, "data", validated_block("training", params))
        for params in (
            training_params,
            _with_data(training_params, counts_format="sparse"),
            _with_data(training_params, max_dense_gb=0.5),
        )
    }
    assert len(fingerprints) == 1
