"""The paired embedding library: imputations back in the data's original units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from omics_vae.data.paired import platform_view
from omics_vae.data.paired_simulate import simulate_paired_tables
from omics_vae.embedding.paired import to_original_units
from omics_vae.processing import paired as steps
from omics_vae.schemas.paired_processing import PairedProcessingParams

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_inverse_transforms_return_the_measured_values_in_original_units():
    block = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_paired.yml").read_text())
    config = PairedProcessingParams.model_validate(block["paired"]["processing"])
    raw_a, raw_b = simulate_paired_tables(
        n_samples=200, n_features_a=40, n_features_b=8, n_unpaired=4, seed=3
    )
    aligned_a, aligned_b, _ = steps.align_platforms(raw_a, raw_b, config)
    split = steps.split_samples(aligned_a, config)
    clean_a, clean_b, _ = steps.clean_platforms(aligned_a, aligned_b, split, config)
    transformed = steps.transform_platforms(clean_a, clean_b, split, config)
    model_input, scalers = steps.scale_platforms(*transformed, split, config)

    record = scalers["platforms"]["b"]
    units = to_original_units(platform_view(model_input, "b").X, record)
    np.testing.assert_allclose(units["original"], clean_b, rtol=1e-4, atol=1e-5)
