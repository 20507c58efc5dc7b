"""Benchmark: which inVAE mechanism integrates best, with and without labels (issue 13).

Trains inVAE variants (and the scVI-style baseline) on ONE processed data set through the
library (``omics_vae.training.single_cell.train_model``, one torch thread), then scores
every latent and Harmony and PCA in one scib-metrics table, with the metrics of
``conf/base/parameters_evaluation.yml`` and exact neighbours, on every cell. It is the
measurement behind inVAE's defaults (``docs/concepts/models.md``); the comparison with
scvi-tools, scANVI and Harmony on the test split is ``integration_quality.py``.

The processed data is any ``model_input.h5ad`` the data_processing pipeline wrote, e.g.
``data/05_model_input/model_input.h5ad/<version>/model_input.h5ad`` of a project copy
configured for pbmc_3chem (``integration_quality.py --keep`` leaves one) or for a
simulation (``omics_vae.data.simulate.simulate_counts(batch_effect_sd=...)``).

Usage (from the repository root, the project's virtual environment active)::

    python benchmarks/invae_variants.py --model-input <model_input.h5ad> \\
        --seeds 0 1 2 --out benchmarks/results/invae_variants_pbmc
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_csv

UNSUPERVISED = {"bio": []}
# scvi-tools' training schedule: the KL weight rises over 400 epochs (its TrainingPlan's
# n_epochs_kl_warmup) and no early stopping (its train() default).
SCVI_TOOLS_SCHEDULE = {"early_stopping_patience": None}
# name -> (model, covariates, hyperparameters[, trainer]), the rows of docs/benchmarks.md.
VARIANTS: dict[str, dict[str, tuple]] = {
    "unsupervised": {
        "z_s 5, decoder without batch (before)": (
            "invae",
            UNSUPERVISED,
            {"n_latent_tech": 5, "decoder_covariates": False},
        ),
        "z_s 5, decoder with batch": ("invae", UNSUPERVISED, {"n_latent_tech": 5}),
        "z_s 5, decoder with batch, MMD 500": (
            "invae",
            UNSUPERVISED,
            {"n_latent_tech": 5, "batch_mmd_weight": 500.0},
        ),
        "z_s 0, decoder with batch (default)": ("invae", UNSUPERVISED, {}),
        "z_s 0, decoder with batch, MMD 500": ("invae", UNSUPERVISED, {"batch_mmd_weight": 500.0}),
        "z_s 0, decoder with batch, encoder without": (
            "invae",
            UNSUPERVISED,
            {"encode_batch": False},
        ),
        "scvi_vae": ("scvi_vae", {}, {}),
    },
    "supervised": {
        "label in the encoder, no classifier, decoder without batch (before)": (
            "invae",
            {},
            {"encode_labels": True, "classifier_weight": 0.0, "decoder_covariates": False},
        ),
        "z_s 5, decoder without batch": ("invae", {}, {"decoder_covariates": False}),
        "z_s 5, decoder with batch (default)": ("invae", {}, {}),
        "z_s 0, decoder with batch": ("invae", {}, {"n_latent_tech": 0}),
    },
    "scvi_parity": {
        "scvi_vae": ("scvi_vae", {}, {}),
        "scvi_vae, scvi-tools' schedule (KL warm-up 400 epochs, no early stopping)": (
            "scvi_vae",
            {},
            {"kl_warmup_epochs": 400},
            SCVI_TOOLS_SCHEDULE,
        ),
    },
}


def train(
    model_input: Any, name: str, spec: tuple, seed: int, *, checkpoints: Path, max_epochs: Any
) -> dict:
    """One variant and seed: its corrected latent and training facts."""
    from omics_vae.processing.annotations import COUNTS_LAYER
    from omics_vae.training.single_cell import train_model

    model_name, covariates, hyperparameters, *trainer = spec
    params = {
        "model": model_name,
        "covariates": covariates,
        "hyperparameters": {model_name: hyperparameters},
        "trainer": {
            "num_threads": 1,
            "enable_progress_bar": False,
            "max_epochs": max_epochs,
            **(trainer[0] if trainer else {}),
        },
        "seed": seed,
        "checkpoint_dir": str(checkpoints / f"{len(list(checkpoints.iterdir()))}"),
    }
    started = time.perf_counter()
    model, history, _ = train_model(model_input, params)
    latent = model.get_latent(model_input, counts_layer=COUNTS_LAYER)[model.corrected_latent]
    wall = time.perf_counter() - started
    print(f"{name} seed {seed}: {len(history)} epochs, {wall:.0f} s", flush=True)
    return {"latent": latent, "epochs": len(history), "train_wall_s": round(wall, 1)}


def score(model_input: Any, latents: dict[str, Any]) -> Any:
    """scib-metrics of every latent, Harmony and PCA, on every cell."""
    import anndata as ad
    import numpy as np
    import pandas as pd
    import yaml
    from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

    from omics_vae.evaluation.baselines import harmony, unintegrated_pca
    from omics_vae.evaluation.integration import _metric_flags, neighbour_search
    from omics_vae.schemas.evaluation import EvaluationParams

    committed = Path(__file__).resolve().parents[1] / "conf/base/parameters_evaluation.yml"
    config = EvaluationParams.model_validate(yaml.safe_load(committed.read_text())["evaluation"])
    record = model_input.uns["data_processing"]["params"]
    obs = model_input.obs
    positions = np.arange(model_input.n_obs)
    pca = unintegrated_pca(model_input, positions, config)
    obsm = {"X_pca": pca, "pca": pca, "harmony": harmony(pca, obs, record["batch_key"], 0)}
    obsm.update(latents)
    cells = ad.AnnData(
        np.zeros((model_input.n_obs, 0), dtype=np.float32),
        obs=pd.DataFrame(
            {
                "batch": obs[record["batch_key"]].astype(str).to_numpy(),
                "cell_type": obs[record["cell_type_key"]].astype(str).to_numpy(),
            }
        ),
        obsm=obsm,
    )
    benchmarker = Benchmarker(
        cells,
        batch_key="batch",
        label_key="cell_type",
        embedding_obsm_keys=[key for key in obsm if key != "X_pca"],
        bio_conservation_metrics=_metric_flags(BioConservation, config.metrics.bio),
        batch_correction_metrics=_metric_flags(BatchCorrection, config.metrics.batch),
        pre_integrated_embedding_obsm_key="X_pca",
        progress_bar=False,
    )
    with neighbour_search(config.neighbors) as neighbours:
        benchmarker.prepare(neighbor_computer=neighbours)
        benchmarker.benchmark()
    return benchmarker.get_results(min_max_scale=False).drop(index="Metric Type")


def main(argv: list[str] | None = None) -> None:
    import anndata as ad

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-input", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True, help="results prefix (.csv added)")
    parser.add_argument("--max-epochs", default="auto", help="auto: the project's rule")
    args = parser.parse_args(argv)

    model_input = ad.read_h5ad(args.model_input)
    rows, latents = [], {}
    with tempfile.TemporaryDirectory() as checkpoints:
        for group in args.variants:
            for name, spec in VARIANTS[group].items():
                for seed in args.seeds:
                    epochs = args.max_epochs if args.max_epochs == "auto" else int(args.max_epochs)
                    run = train(
                        model_input,
                        name,
                        spec,
                        seed,
                        checkpoints=Path(checkpoints),
                        max_epochs=epochs,
                    )
                    key = f"{group} | {name} | {seed}"
                    latents[key] = run.pop("latent")
                    rows.append({"group": group, "variant": name, "seed": seed, **run, "key": key})
    results = score(model_input, latents)
    for row in rows:
        scores = results.loc[row.pop("key")]
        row.update({column: round(float(scores[column]), 4) for column in SCORES})
    for baseline in ("harmony", "pca"):
        scores = results.loc[baseline]
        rows.append({"group": "baseline", "variant": baseline, "seed": ""} | {
            column: round(float(scores[column]), 4) for column in SCORES
        })  # fmt: skip
    write_csv(args.out.with_suffix(".csv"), rows)
    print(f"wrote {args.out.with_suffix('.csv')}")


SCORES = ("Batch correction", "Bio conservation", "Total")

if __name__ == "__main__":
    main()
