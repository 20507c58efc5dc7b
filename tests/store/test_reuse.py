"""Train once: the training fingerprint and reuse of a finished model found in MLflow."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import mlflow
import pytest
import torch

from omics_vae.datasets import LightningCheckpointDataset
from omics_vae.models import InVAE
from omics_vae.params import validate_section
from omics_vae.pipelines.training.nodes import train_or_reuse_model
from omics_vae.schemas.training import TrainingParams, default_hyperparameters
from omics_vae.store.reuse import (
    FINGERPRINT_TAG,
    SINGLE_CELL_ARTIFACTS,
    ModelStore,
    find_trained_model,
    retrieve_or_train,
)
from omics_vae.training.identity import fingerprint_of
from omics_vae.training.single_cell import checked_identity
from tests.conftest import validated_block


@pytest.fixture
def tracking(tmp_path):
    """A temporary store with an active run, as `kedro run` has."""
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with mlflow.start_run():
        yield mlflow.MlflowClient()
    mlflow.set_tracking_uri(previous)


def _fingerprint(model_input, params) -> str:
    config = validate_section("training", TrainingParams, params)
    return fingerprint_of(checked_identity(model_input, config))


def test_same_data_and_parameters_give_the_same_fingerprint_and_any_change_another(
    model_input, training_params
):
    reference = _fingerprint(model_input, training_params)
    assert _fingerprint(model_input.copy(), dict(training_params)) == reference

    other_seed = {**training_params, "seed": 1}
    other_size = {
        **training_params,
        "hyperparameters": {
            **training_params["hyperparameters"],
            "invae": {**training_params["hyperparameters"]["invae"], "n_latent_bio": 7},
        },
    }
    changed_counts = model_input.copy()
    changed_counts.layers["counts"][0, 0] += 1
    changed_split = model_input.copy()
    changed_split.obs["split"] = changed_split.obs["split"].iloc[::-1].to_numpy()
    fingerprints = {
        _fingerprint(model_input, other_seed),
        _fingerprint(model_input, other_size),
        _fingerprint(changed_counts, training_params),
        _fingerprint(changed_split, training_params),
    }
    assert reference not in fingerprints
    assert len(fingerprints) == 4


def test_defaults_left_to_the_model_or_written_out_are_the_same_model(model_input, training_params):
    # The YAML leaves every default to the model's declaration (conftest sets n_hidden).
    assert training_params["hyperparameters"]["invae"] == {"n_hidden": 16}
    written_out = {
        **training_params,
        "hyperparameters": {
            # Every default of inVAE written out, and scVI's block (another model) changed.
            "invae": {**default_hyperparameters(InVAE), "n_hidden": 16},
            "scvi_vae": {"n_latent": 3},
        },
    }
    assert _fingerprint(model_input, written_out) == _fingerprint(model_input, training_params)
    config = validate_section("training", TrainingParams, training_params)
    effective = config.effective_parameters()["hyperparameters"]
    assert list(effective) == ["invae"]
    assert effective["invae"]["n_latent_bio"] == 30
    assert effective["invae"]["kl_warmup_epochs"] == 10


def test_relabelled_cells_with_the_same_counts_get_another_fingerprint(
    model_input, training_params
):
    reference = _fingerprint(model_input, training_params)
    relabelled = model_input.copy()
    relabelled.obs["cell_type"] = relabelled.obs["cell_type"].sample(frac=1, random_state=0).values
    rebatched = model_input.copy()
    rebatched.obs["batch"] = rebatched.obs["batch"].iloc[::-1].to_numpy()
    # (A cell without a label is refused before any fingerprint: test_training_input.)
    one_cell_relabelled = model_input.copy()
    one_cell_relabelled.obs["cell_type"] = one_cell_relabelled.obs["cell_type"].astype(object)
    one_cell_relabelled.obs.iloc[0, one_cell_relabelled.obs.columns.get_loc("cell_type")] = "new"

    fingerprints = {
        _fingerprint(changed, training_params)
        for changed in (relabelled, rebatched, one_cell_relabelled)
    }
    assert reference not in fingerprints
    assert len(fingerprints) == 3
    # The scVI-style baseline is not given the labels: relabelling does not change it.
    scvi = {**training_params, "model": "scvi_vae"}
    assert _fingerprint(relabelled, scvi) == _fingerprint(model_input, scvi)


def test_how_a_run_goes_does_not_change_the_fingerprint(model_input, training_params):
    reference = _fingerprint(model_input, training_params)
    operational = {
        **training_params,
        "resume_from": "last",
        "checkpoint_dir": "elsewhere",
        "trainer": {**training_params["trainer"], "num_threads": 1, "enable_progress_bar": True},
    }
    assert _fingerprint(model_input, operational) == reference


def _log_like_the_pipeline(client, model, history, summary, tmp_path) -> str:
    """What the catalog's mlflow artifact paths put into a training run."""
    run = client.create_run(client.get_experiment_by_name("Default").experiment_id)
    checkpoint = tmp_path / "model.ckpt"
    LightningCheckpointDataset(filepath=str(checkpoint)).save(model)
    (tmp_path / "training_summary.json").write_text(json.dumps(summary))
    history.to_csv(tmp_path / "training_history.csv", index=False)
    run_id = run.info.run_id
    client.log_artifact(run_id, str(checkpoint), "model")
    client.log_artifact(run_id, str(tmp_path / "training_summary.json"), "model")
    client.log_artifact(run_id, str(tmp_path / "training_history.csv"), "reports")
    client.set_tag(run_id, FINGERPRINT_TAG, summary[FINGERPRINT_TAG])
    return run_id


def test_a_finished_identical_model_is_reused_and_force_retrain_trains_again(
    model_input, training_params, tracking, tmp_path
):
    params = validated_block("training", training_params)
    model, history, summary = train_or_reuse_model(model_input, params, model_store=ModelStore())
    assert summary["reused_from_run"] is None
    fingerprint = summary[FINGERPRINT_TAG]
    assert find_trained_model(fingerprint, SINGLE_CELL_ARTIFACTS) is None
    run_id = _log_like_the_pipeline(tracking, model, history, summary, tmp_path)

    reused, reused_history, reused_summary = train_or_reuse_model(
        model_input, validated_block("training", training_params), model_store=ModelStore()
    )
    assert reused_summary["reused_from_run"] == run_id
    assert reused_summary["epochs"] == summary["epochs"]
    assert list(reused_history["epoch"]) == list(history["epoch"])
    for name, weights in model.state_dict().items():
        torch.testing.assert_close(reused.state_dict()[name], weights)

    _, _, retrained = train_or_reuse_model(
        model_input,
        validated_block("training", training_params),
        force_retrain=True,
        model_store=ModelStore(),
    )
    assert retrained["reused_from_run"] is None
    # Without a store (a notebook, a test, a node called outside `kedro run`) it trains.
    _, _, storeless = train_or_reuse_model(
        model_input, validated_block("training", training_params)
    )
    assert storeless["reused_from_run"] is None
    other_seed = {**training_params, "seed": 3}
    _, _, other = train_or_reuse_model(
        model_input, validated_block("training", other_seed), model_store=ModelStore()
    )
    assert other["reused_from_run"] is None


def test_a_tagged_run_without_its_files_is_not_reused(model_input, training_params, tracking):
    fingerprint = _fingerprint(model_input, training_params)
    run = tracking.create_run(tracking.get_experiment_by_name("Default").experiment_id)
    tracking.set_tag(run.info.run_id, FINGERPRINT_TAG, fingerprint)
    assert find_trained_model(fingerprint, SINGLE_CELL_ARTIFACTS) is None


def test_an_unreadable_stored_model_falls_back_to_training_and_says_so(
    model_input, training_params, tracking, tmp_path, caplog
):
    model, history, summary = train_or_reuse_model(
        model_input, validated_block("training", training_params), model_store=ModelStore()
    )
    run_id = _log_like_the_pipeline(tracking, model, history, summary, tmp_path)
    # The stored checkpoint is cut short, as a full disk or an interrupted upload leaves it.
    stored = Path(tracking.download_artifacts(run_id, "model/model.ckpt", str(tmp_path / "dl")))
    stored.write_bytes(stored.read_bytes()[:200])
    tracking.log_artifact(run_id, str(stored), "model")

    with caplog.at_level(logging.WARNING):
        _, _, retrained = train_or_reuse_model(
            model_input, validated_block("training", training_params), model_store=ModelStore()
        )

    assert retrained["reused_from_run"] is None
    assert retrained["epochs"] == summary["epochs"]
    warning = next(r.getMessage() for r in caplog.records if run_id in r.getMessage())
    assert "cannot be read" in warning
    assert "corrupt or truncated" in warning
    assert "artifacts:/model.ckpt" in warning
    assert "/tmp" not in warning


def test_a_dry_run_does_not_look_for_a_model_to_reuse():
    class UnusableStore:
        def __getattr__(self, name):
            raise AssertionError(f"a dry run searched the store ({name})")

    _, _, summary = retrieve_or_train(
        lambda: ("model", "history", {"dry_run": True}),
        fingerprint="f",
        artifacts=SINGLE_CELL_ARTIFACTS,
        store=UnusableStore(),
        dry_run=True,
    )
    assert summary == {"dry_run": True, FINGERPRINT_TAG: "f", "reused_from_run": None}
