"""The paired pipelines on an in-memory catalog: every node, on tiny simulated data."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner

from omics_vae.data.paired import PairedInputError
from omics_vae.data.paired_simulate import simulate_paired_tables
from omics_vae.families import PAIRED
from omics_vae.pipelines import paired_embedding, paired_processing, paired_training
from omics_vae.pipelines.paired_embedding.nodes import embed_paired_samples
from tests.conftest import validated_block

PROJECT_ROOT = Path(__file__).resolve().parents[3]
CHECKED = (
    "paired_model_input",
    "paired_scalers",
    "paired_clean_b",
    "paired_alignment_report",
    "paired_dropped_features",
    "paired_model",
    "paired_training_history",
    "paired_imputed",
    "paired_embeddings",
    "paired_latent_table",
    "paired_imputed_table_b",
    "paired_embedding_info",
    "paired_imputation_summary",
    "paired_sample_scores",
    "paired_imputation_metrics",
    "paired_feature_scatter",
)


class KeptDataset(MemoryDataset):
    """A MemoryDataset the runner cannot release, so the test can read it afterwards."""

    def _release(self) -> None:
        pass


@pytest.fixture
def params(tmp_path):
    block = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_paired.yml").read_text())
    block = copy.deepcopy(block["paired"])
    block["processing"]["platform_a"]["top_variable_features"] = 30
    block["training"]["hyperparameters"].update(n_hidden=32, n_latent=6)
    block["training"]["trainer"].update(
        max_epochs=25, batch_size=32, num_threads=1, enable_progress_bar=False
    )
    block["training"]["checkpoint_dir"] = str(tmp_path / "checkpoints")
    block["evaluation"]["baselines"]["pca_components"] = 10
    return block


@pytest.fixture(scope="module")
def raw_tables():
    return simulate_paired_tables(
        n_samples=200, n_features_a=40, n_features_b=8, n_unpaired=4, seed=3
    )


def _catalog(raw_tables, params) -> DataCatalog:
    catalog = DataCatalog(
        {
            "platform_a_raw": MemoryDataset(raw_tables[0]),
            "platform_b_raw": MemoryDataset(raw_tables[1]),
            **{name: KeptDataset(copy_mode="assign") for name in CHECKED},
        }
    )
    for stage, block in params.items():
        catalog[f"params:paired.{stage}"] = validated_block(f"paired.{stage}", block)
    catalog["params:force_retrain"] = False
    catalog["trained_models"] = MemoryDataset(None)  # no store: always train
    return catalog


def test_the_paired_pipeline_imputes_better_than_the_permuted_control(raw_tables, params):
    catalog = _catalog(raw_tables, params)
    SequentialRunner().run(PAIRED.end_to_end(), catalog)

    model_input = catalog.load("paired_model_input")
    assert model_input.shape == (200, 30 + 7)  # top 30 of A; B's mostly-missing feature dropped
    assert set(model_input.obs["split"]) == {"train", "val", "test"}
    train = (model_input.obs["split"] == "train").to_numpy()
    np.testing.assert_allclose(model_input.X[train].mean(axis=0), 0, atol=1e-4)
    json.dumps(catalog.load("paired_scalers"))  # plain JSON
    assert set(catalog.load("paired_alignment_report")["present_in"]) == {
        "platform_a",
        "platform_b",
    }
    assert list(catalog.load("paired_dropped_features")["feature"]) == ["A039", "B007"]

    embeddings = catalog.load("paired_embeddings")
    assert set(embeddings.obsm) == {"z_a", "z_b", "z_joint"}
    assert catalog.load("paired_latent_table").shape == (200, 2 + 3 * 6)
    assert catalog.load("paired_embedding_info")["data"]["platforms"] == {
        "a": "platform_a",
        "b": "platform_b",
    }
    imputed_table = catalog.load("paired_imputed_table_b")
    raw_b = catalog.load("paired_clean_b")
    assert list(imputed_table.columns[1:]) == list(raw_b.columns)
    # Original units: values on the raw scale (tens), not z-scores or logs; below the raw
    # means, as expm1 of a mean log is (Jensen).
    ratio = imputed_table.iloc[:, 1:].to_numpy().mean(axis=0) / raw_b.to_numpy().mean(axis=0)
    assert np.all((ratio > 0.15) & (ratio < 1.5))

    summary = catalog.load("paired_imputation_summary").set_index(["direction", "method"])
    a_to_b = summary.loc["platform_a_to_platform_b", "pearson"]
    assert a_to_b["joint_vae"] > 0.5
    # 40 test samples x 7 features: chance correlations of the control stay small.
    assert abs(a_to_b["permuted"]) < 0.35
    assert a_to_b["joint_vae"] > a_to_b["permuted"] + 0.4
    assert a_to_b["mean"] == pytest.approx(0.0, abs=1e-9)
    metrics = catalog.load("paired_imputation_metrics")
    assert metrics["paired/platform_a_to_platform_b/joint_vae/pearson"]["value"] == pytest.approx(
        a_to_b["joint_vae"]
    )
    assert catalog.load("paired_training_history")["val/cross_ab"].notna().all()
    assert catalog.load("paired_feature_scatter").axes


def test_a_scaler_file_of_other_features_is_refused(raw_tables, params):
    catalog = _catalog(raw_tables, params)
    SequentialRunner().run(paired_processing.create_pipeline(), catalog)
    scalers = catalog.load("paired_scalers")
    scalers["platforms"]["b"]["scaler"]["features"][0] = "CD999"
    with pytest.raises(PairedInputError, match=r"paired_scalers \(platform b\).*'CD999'"):
        embed_paired_samples(
            catalog.load("paired_model_input"),
            None,
            scalers,
            validated_block("paired.embedding", params["embedding"]),
        )
    assert {"paired_model", "paired_scalers"} <= paired_embedding.create_pipeline().inputs()


def test_the_joint_vae_trains_in_phases_like_the_single_cell_models(raw_tables, params):
    """paired.training takes the same phases as training: here the decoders are frozen
    after a short joint phase, and only the encoders adapt."""
    params["training"]["phases"] = [
        {"name": "joint", "until": {"epochs": 2}},
        {"name": "encoders", "frozen": ["decoder_a", "decoder_b"], "until": {"epochs": 2}},
    ]
    params["training"]["trainer"]["max_epochs"] = 4
    catalog = _catalog(raw_tables, params)
    catalog["paired_training_summary"] = KeptDataset()
    SequentialRunner().run(
        paired_processing.create_pipeline() + paired_training.create_pipeline(), catalog
    )
    summary = catalog.load("paired_training_summary")
    assert [phase["phase"] for phase in summary["phases"]] == ["joint", "encoders"]
    history = catalog.load("paired_training_history")
    assert list(history["phase_name"]) == ["joint"] * 2 + ["encoders"] * 2
