"""Tiny paired data shaped like paired_processing's output, and a perfect imputation."""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from omics_vae.data.paired import TRANSFORMED_LAYER, FeatureScaler

N_TRAIN, N_VAL, N_TEST = 40, 10, 10
PLATFORMS = {"a": ("rna", 6), "b": ("protein", 4)}


def make_paired_inputs() -> tuple[ad.AnnData, ad.AnnData, dict[str, Any]]:
    """``(paired_model_input, paired_imputed, paired_scalers)``.

    Both platforms are linear in a shared 2-D latent plus a little noise (after the
    log1p transform), so a ridge regression predicts them well; ``paired_imputed`` holds
    the measured values themselves, an imputation that scores 1.
    """
    rng = np.random.default_rng(0)
    n_samples = N_TRAIN + N_VAL + N_TEST
    latent = rng.normal(size=(n_samples, 2))
    split = np.array(["train"] * N_TRAIN + ["val"] * N_VAL + ["test"] * N_TEST)
    transformed, scaled, var, record = [], [], [], {}
    for role, (platform, n_features) in PLATFORMS.items():
        values = 2 + latent @ rng.normal(size=(2, n_features))
        values += 0.1 * rng.normal(size=values.shape)
        features = [f"{platform}{i}" for i in range(n_features)]
        scaler = FeatureScaler.fit(values[split == "train"], features, "zscore")
        transformed.append(values)
        scaled.append(scaler.transform(values))
        var.append(pd.DataFrame({"role": role, "platform": platform, "feature": features}))
        record[role] = {"scaler": scaler.to_dict(), "log": "log1p", "log_offset": 1.0}
    var = pd.concat(var, ignore_index=True)
    var.index = var["platform"] + ":" + var["feature"]
    obs = pd.DataFrame({"split": split}, index=[f"sample{i}" for i in range(n_samples)])
    model_input = ad.AnnData(np.hstack(scaled), obs=obs, var=var)
    model_input.layers[TRANSFORMED_LAYER] = np.hstack(transformed)
    imputed = ad.AnnData(np.expm1(np.hstack(transformed)), obs=obs.copy(), var=var.copy())
    imputed.layers[TRANSFORMED_LAYER] = np.hstack(transformed)
    return model_input, imputed, {"platforms": record}
