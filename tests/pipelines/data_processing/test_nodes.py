"""Tests of the data-processing nodes as adapters: they take the validated
``data_processing`` block as the project's context passes it (from a possibly partial
dict) and chain. What each step computes is tested in ``tests/processing``; how a bad
block is refused, in ``tests/test_params.py``."""

from __future__ import annotations

import pytest

from omics_vae.pipelines.data_processing.nodes import (
    DataProcessingError,
    filter_cells_and_genes,
    normalise_counts,
    select_highly_variable_genes,
    split_cells,
    validate_raw_data,
)
from omics_vae.processing.split import SPLITS
from tests.conftest import validated_block


def test_a_refusal_of_the_library_reaches_the_caller_unchanged(raw_counts, parameters):
    parameters["batch_key"] = "donor"

    with pytest.raises(DataProcessingError, match=r"'donor' \(data_processing\.batch_key\)"):
        validate_raw_data(raw_counts, validated_block("data_processing", parameters))


def test_every_node_accepts_larger_data_with_other_names(make_raw_counts) -> None:
    """The nodes chain on data whose keys are configured, not hard-coded."""
    raw = make_raw_counts(n_cells=400, n_batches=2, seed=3)
    raw.obs = raw.obs.rename(columns={"batch": "chemistry", "cell_type": "label"})
    parameters = validated_block(
        "data_processing",
        {
            "batch_key": "chemistry",
            "cell_type_key": "label",
            "qc": {"min_genes_per_cell": 20, "min_counts_per_cell": 50},
            "hvg": {"n_top_genes": 40, "flavor": "cell_ranger", "subset": True},
        },
    )

    adata = validate_raw_data(raw, parameters)
    adata, _, summary = filter_cells_and_genes(adata, parameters)
    adata = split_cells(
        select_highly_variable_genes(normalise_counts(adata, parameters), parameters),
        parameters,
    )

    assert list(summary["batch"]) == ["batch0", "batch1", "total"]
    assert adata.n_vars == 40
    assert set(adata.obs["split"]) == set(SPLITS)
