"""A small data family declared in the tests only: bulk tables (samples x features), a
PCA "model" and its reconstruction error. It shows that a new family is one declaration
plus its pipelines and configuration, with no shared module edited."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import pandas as pd
from kedro.pipeline import Node, Pipeline
from pydantic import Field
from sklearn.decomposition import PCA

from omics_vae.families import Family
from omics_vae.params import StrictModel
from omics_vae.schemas.training import FitParams


def standardise(raw: pd.DataFrame) -> pd.DataFrame:
    """The table with every feature centred and scaled."""
    return (raw - raw.mean()) / raw.std(ddof=0)


class ToyTrainingParams(StrictModel):
    """``toy.training``: the PCA's size and seed."""

    n_components: int = Field(..., ge=1)
    seed: int = 0
    checkpoint_dir: str = "unused"
    dry_run: bool = False


class ToyParams(StrictModel):
    """The toy family's one parameter block, ``toy``."""

    training: ToyTrainingParams


def fit_pca(table: pd.DataFrame, params: ToyTrainingParams) -> tuple[PCA, dict[str, Any]]:
    """A PCA of ``params.n_components`` components, seeded, and its training summary."""
    started = time.perf_counter()
    model = PCA(n_components=params.n_components, random_state=params.seed).fit(table)
    identity = f"{pd.util.hash_pandas_object(table).sum()}|{sorted(params.model_dump().items())}"
    summary = {
        "model": "pca",
        "data_fingerprint": hashlib.blake2b(table.to_numpy().tobytes()).hexdigest()[:16],
        "training_fingerprint": hashlib.blake2b(identity.encode()).hexdigest()[:20],
        "wall_time_s": time.perf_counter() - started,
        "best_val_loss": float(model.noise_variance_),
        "epochs": 1,
        "reused_from_run": None,
    }
    return model, summary


def reconstruction_scores(model: PCA, table: pd.DataFrame) -> dict[str, float]:
    """How much of the table the model keeps: explained variance and reconstruction error."""
    restored = model.inverse_transform(model.transform(table))
    return {
        "toy/explained_variance": float(model.explained_variance_ratio_.sum()),
        "toy/reconstruction_error": float(np.mean((table.to_numpy() - restored) ** 2)),
    }


def model_scores(scores: dict[str, float]) -> dict[str, float]:
    return dict(scores)


def processing() -> Pipeline:
    return Pipeline(
        [Node(standardise, "toy_raw", "toy_model_input", name="standardise_node")],
        tags="toy_processing",
    )


def training() -> Pipeline:
    return Pipeline(
        [
            Node(
                fit_pca,
                ["toy_model_input", "params:toy.training"],
                ["toy_model", "toy_training_summary"],
                name="fit_pca_node",
            )
        ],
        tags="toy_training",
    )


def evaluation() -> Pipeline:
    return Pipeline(
        [
            Node(
                reconstruction_scores,
                ["toy_model", "toy_model_input"],
                "toy_scores",
                name="score_node",
            )
        ],
        tags="toy_evaluation",
    )


TOY = Family(
    name="toy",
    pipeline="toy",
    processing=processing,
    stages={"training": training, "evaluation": evaluation},
    sections=("toy",),
    seed="toy.training.seed",
    checkpoint_dir="toy.training.checkpoint_dir",
    training_section="toy.training",
    training_schema=FitParams,
    parameters={"toy": ToyParams},
    score_row=model_scores,
    prefix="toy_",
    scores="toy_scores",
    training_summary="toy_training_summary",
)
