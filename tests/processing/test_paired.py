"""The paired_processing steps of both platforms, as the ``paired.processing`` block says."""

from __future__ import annotations

import pytest

from omics_vae.data.paired import PairedInputError
from omics_vae.data.paired_simulate import simulate_paired_tables
from omics_vae.processing.paired import split_samples
from omics_vae.schemas.paired_processing import PairedProcessingParams


def test_an_empty_validation_split_is_refused():
    config = PairedProcessingParams.model_validate(
        {"split": {"train": 0.99, "val": 0.005, "test": 0.005}}
    )
    raw_a, _ = simulate_paired_tables(
        n_samples=200, n_features_a=40, n_features_b=8, n_unpaired=4, seed=3
    )
    frame = raw_a.set_index("sample_id").iloc[:100]
    with pytest.raises(PairedInputError, match=r"val split.*paired.processing.split.val"):
        split_samples(frame, config)
