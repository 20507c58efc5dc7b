"""`kedro run` as a user runs it, in a temporary copy of the project.

Where the command line itself is not under test (what the pipelines write, how a bad
parameter is refused), the run is a Kedro session in this process (tests/kedro_session.py),
which spares a new process's imports.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import mlflow
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml

from omics_vae.models.checkpoints import CheckpointError, read_checkpoint
from tests.conftest import run_kedro, use_pbmc_3chem, use_quick_metrics
from tests.kedro_session import run_in_process
from tests.short_run import short_run_project, viz_build

pytestmark = pytest.mark.e2e

# One torch thread: on a shared 2-core machine more threads wait on each other.
FAST_TRAINING = (
    "training.trainer.max_epochs=3",
    "training.trainer.batch_size=256",
    "training.trainer.num_threads=1",
)


def _versions(project: Path, relative: str) -> list[Path]:
    return sorted((project / relative).glob("*/*"))


def test_data_processing_on_the_embedded_default_writes_new_versions(project_copy):
    run_in_process(project_copy, "data_processing")
    # As a user runs it: a data-only run imports no model library (Python lists every
    # module it imports with -X importtime).
    second = run_kedro(
        project_copy,
        "run",
        "--pipelines",
        "data_processing",
        interpreter_options=("-X", "importtime"),
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in second.stderr.splitlines()}
    assert "scanpy" in imported  # the listing is there
    assert not {"torch", "lightning"} & imported

    model_inputs = _versions(project_copy, "data/05_model_input/model_input.h5ad")
    assert len(model_inputs) == 2
    adata = ad.read_h5ad(model_inputs[-1])
    counts = adata.layers["counts"]
    assert sp.issparse(counts)
    assert np.array_equal(counts.data, np.round(counts.data))
    # X is log1p of the counts scaled by one factor per cell (normalised over all genes
    # before the highly variable ones were kept).
    counts_rows = counts[:20].toarray()
    x_rows = adata.X[:20].toarray() if sp.issparse(adata.X) else np.asarray(adata.X[:20])
    detected = counts_rows > 0
    assert np.array_equal(x_rows > 0, detected)
    ratios = np.where(detected, np.expm1(x_rows) / np.where(detected, counts_rows, 1), np.nan)
    np.testing.assert_allclose(np.nanmax(ratios, axis=1), np.nanmin(ratios, axis=1), rtol=1e-3)
    assert adata.var["highly_variable"].dtype == bool
    assert set(adata.obs["split"].unique()) == {"train", "val", "test"}
    assert len(_versions(project_copy, "data/08_reporting/qc_summary.csv")) == 2
    qc_png = _versions(project_copy, "data/08_reporting/qc_metrics.png")[-1]
    assert qc_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_bad_parameter_fails_in_the_first_second_naming_the_key(project_copy, kedro_cli):
    result = kedro_cli(
        "run",
        "--pipelines",
        "data_processing",
        "--params",
        "data_processing.qc.min_genes=5",
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1
    assert "data_processing.qc.min_genes" in output
    # The message alone; the traceback is in the file it names.
    assert "Traceback" not in output
    # No third-party warnings a user cannot act on (omics_vae.third_party_warnings).
    assert "register_new_resolver" not in output
    assert "type hints to the `predict` method" not in output
    assert "Error: " in output
    (traceback_file,) = (project_copy / "logs" / "tracebacks").glob("*.txt")
    assert str(traceback_file.relative_to(project_copy)) in output
    assert "Traceback" in traceback_file.read_text()
    assert not _versions(project_copy, "data/05_model_input/model_input.h5ad")


def test_pbmc_processing_and_training_end_to_end(project_copy, kedro_cli, pbmc_3chem_path):
    use_pbmc_3chem(project_copy, pbmc_3chem_path)
    # Every scib metric on pbmc is computed in tests/pipelines/evaluation/test_pipeline.py;
    # here the run's wiring and lineage are under test.
    use_quick_metrics(project_copy)

    kedro_cli("run", "--params", ",".join(FAST_TRAINING))

    model_inputs = _versions(project_copy, "data/05_model_input/model_input.h5ad")
    assert len(model_inputs) == 1
    adata = ad.read_h5ad(model_inputs[0])
    assert adata.uns["data_processing"]["params"]["batch_key"] == "chemistry"
    assert set(adata.obs["chemistry"].unique()) == {"3pv1", "3pv2", "5p"}
    assert adata.n_obs > 1100
    checkpoints = _versions(project_copy, "data/06_models/model.ckpt")
    assert len(checkpoints) == 1
    card = yaml.safe_load(_versions(project_copy, "data/06_models/model_card.yml")[0].read_text())
    assert card["model"] == "invae"
    assert card["covariates"] == {"bio": ["cell_type"], "tech": ["chemistry"]}
    assert card["training"]["epochs"] == 3
    history = pd.read_csv(_versions(project_copy, "data/08_reporting/training_history.csv")[0])
    assert list(history["epoch"]) == [0, 1, 2]
    assert np.isfinite(history["val/loss"]).all()

    embeddings = ad.read_h5ad(_versions(project_copy, "data/07_model_output/embeddings.h5ad")[0])
    assert embeddings.obsm["X_invae"].shape == (adata.n_obs, 30)
    assert embeddings.obsm["X_invae_technical"].shape == (adata.n_obs, 5)
    # The label classifier predicts every cell's type from its counts alone.
    predicted = embeddings.obs["predicted_cell_type"]
    assert set(predicted.cat.categories) == set(adata.obs["cell_type"].cat.categories)
    assert embeddings.obs["predicted_cell_type_probability"].between(0, 1).all()
    _check_evaluation_reports(project_copy)
    # Re-evaluating reads the saved embeddings; nothing is retrained or re-embedded.
    kedro_cli("run", "--pipelines", "evaluation")
    assert len(_versions(project_copy, "data/08_reporting/scib_results.csv")) == 2
    assert len(_versions(project_copy, "data/07_model_output/embeddings.h5ad")) == 1
    assert len(_versions(project_copy, "data/06_models/model.ckpt")) == 1

    # Retraining reads the processed data already there; it does not reprocess. Without
    # force_retrain the identical finished model would be reused (tests/test_sweeps_e2e).
    retrain = ",".join((*FAST_TRAINING, "force_retrain=true"))
    kedro_cli("run", "--pipelines", "training", "--params", retrain)
    assert len(_versions(project_copy, "data/05_model_input/model_input.h5ad")) == 1
    checkpoints = _versions(project_copy, "data/06_models/model.ckpt")
    assert len(checkpoints) == 2

    # An older model embeds on demand, and its info record says which one it was.
    first_model = checkpoints[0].parent.name
    kedro_cli(
        "run",
        "--pipelines",
        "embedding",
        "--load-versions",
        f"model:{first_model},model_card:{first_model}",
    )
    info_file = _versions(project_copy, "data/07_model_output/embedding_info.yml")[-1]
    info = yaml.safe_load(info_file.read_text())
    assert info["versions"]["model"] == first_model
    assert info["versions"]["model_input"] == model_inputs[0].parent.name

    _check_mlflow_store(project_copy / "mlflow.db", n_training_runs=2)


def _check_evaluation_reports(project: Path) -> None:
    scib = pd.read_csv(_versions(project, "data/08_reporting/scib_results.csv")[0])
    assert set(scib["embedding"]) >= {"invae", "pca"}
    assert scib["Total"].between(0, 1).all()
    association = pd.read_csv(_versions(project, "data/08_reporting/latent_association.csv")[0])
    assert set(association["covariate"]) == {"batch", "cell_type"}
    assert set(association["obs_key"]) == {"chemistry", "cell_type"}
    assert association["eta_squared"].between(0, 1).all()
    anomalies = pd.read_csv(_versions(project, "data/08_reporting/anomaly_scores.csv")[0])
    assert anomalies["flagged"].sum() >= 1
    transfer = pd.read_csv(_versions(project, "data/08_reporting/label_transfer.csv")[0])
    held_out = transfer.set_index("cells").loc["labelled, held out"]
    assert held_out["n_cells"] > 0
    assert 0 <= held_out["accuracy"] <= 1
    for figure in ("scib_results", "umap", "latent_association", "anomalies", "label_transfer"):
        png = _versions(project, f"data/08_reporting/{figure}.png")[0]
        assert png.read_bytes()[:4] == b"\x89PNG"


def _check_mlflow_store(store: Path, n_training_runs: int) -> None:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("omics_vae")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.model_name = 'invae'")
    assert len(runs) == n_training_runs
    run = runs[0]
    assert run.data.params["training.model"] == "invae"
    assert run.data.tags["data_fingerprint"]
    assert run.data.tags["data_version"]
    history = client.get_metric_history(run.info.run_id, "val/loss")
    assert [point.step for point in history] == [0, 1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/model.ckpt", "model/model_card.yml"} <= artifacts
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert "figures/loss_curves.png" in figures
    first_run = runs[-1]
    assert 0 < first_run.data.metrics["scib/total"] <= 1
    assert 0 <= first_run.data.metrics["label_transfer/labelled_held_out/accuracy"] <= 1
    assert "figures/umap.png" in {
        a.path for a in client.list_artifacts(first_run.info.run_id, "figures")
    }

    logged = client.search_logged_models(experiment_ids=[experiment.experiment_id])
    assert len(logged) == n_training_runs
    with sqlite3.connect(store) as connection:
        assert connection.execute("select count(*) from runs").fetchone()[0] >= n_training_runs


def test_kedro_viz_build_exports_the_pipelines_with_layers(tmp_path_factory):
    # The build of the shared short run, which the browser tests open too.
    build = viz_build(short_run_project(tmp_path_factory))
    main = (build / "api" / "main").read_text()
    assert "train_model_node" in main
    assert "model_input" in main
    assert '"layers"' in main


def test_training_killed_part_way_resumes_from_last(
    project_copy, kedro_cli, pbmc_3chem_path, tmp_path
):
    use_pbmc_3chem(project_copy, pbmc_3chem_path)
    kedro_cli("run", "--pipelines", "data_processing")
    # The kill lands once the first epoch's last.ckpt is whole, so the run only has to
    # outlast the polling of that file (a few seconds of epochs on a slow machine).
    epochs = 40
    long_training = (
        f"training.trainer.max_epochs={epochs},training.trainer.early_stopping_patience=null,"
        "training.trainer.num_threads=1"
    )

    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kedro",
            "run",
            "--pipelines",
            "training",
            "--params",
            long_training,
        ],
        cwd=project_copy,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _kill_once_a_last_checkpoint_is_whole(
        process, project_copy / "data" / "06_models" / "lightning" / "invae"
    )
    assert not _versions(project_copy, "data/06_models/model.ckpt"), "it was not interrupted"

    kedro_cli(
        "run", "--pipelines", "training", "--params", f"{long_training},training.resume_from=last"
    )
    card = yaml.safe_load(_versions(project_copy, "data/06_models/model_card.yml")[0].read_text())
    assert card["training"]["epochs"] == epochs
    assert card["training"]["resumed_from"].endswith("last.ckpt")
    history = pd.read_csv(_versions(project_copy, "data/08_reporting/training_history.csv")[0])
    assert list(history["epoch"]) == list(range(epochs))
    # The killed run's MLflow run was closed when the next run started.
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("omics_vae").experiment_id])
    statuses = sorted(run.info.status for run in runs)
    assert statuses == ["FINISHED", "FINISHED", "KILLED"]


def _kill_once_a_last_checkpoint_is_whole(process: subprocess.Popen, folder: Path) -> None:
    """SIGKILL ``process`` as soon as a run under ``folder`` has a complete last.ckpt.

    last.ckpt is rewritten in place every epoch: the process is frozen (SIGSTOP) while the
    file is read, and let go on if it was caught mid-write, so the kill never leaves a
    half-written checkpoint behind and no fixed wait is needed.
    """
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert process.poll() is None, "training ended before it could be interrupted"
        for last in folder.glob("*/last.ckpt"):
            os.kill(process.pid, signal.SIGSTOP)
            try:
                read_checkpoint(last)
            except CheckpointError:
                os.kill(process.pid, signal.SIGCONT)
                break
            process.kill()
            process.wait()
            return
        time.sleep(0.02)
    process.kill()
    pytest.fail(f"no whole last.ckpt appeared under {folder} within 300 s")


def test_the_shipped_three_phase_recipe_trains_on_pbmc_and_tracks_each_phase(
    project_copy, kedro_cli, pbmc_3chem_path
):
    # The environment replaces conf/local: give it the pbmc settings the README shows.
    use_pbmc_3chem(project_copy, pbmc_3chem_path)
    local, recipe = project_copy / "conf" / "local", project_copy / "conf" / "three_phase"
    for name in ("catalog.yml", "parameters_data_processing.yml"):
        (recipe / name).write_text((local / name).read_text())

    plan = kedro_cli("training-plan", "--env", "three_phase").stdout
    assert "2 | decoder_finetune | until 20 epochs" in plan
    assert not _versions(project_copy, "data/05_model_input/model_input.h5ad")  # config only

    kedro_cli(
        "run",
        "--env",
        "three_phase",
        "--pipelines",
        "data_processing,training",
        "--params",
        "training.trainer.num_threads=1",
    )

    history = pd.read_csv(_versions(project_copy, "data/08_reporting/training_history.csv")[0])
    phases = list(dict.fromkeys(history["phase_name"]))
    assert phases == ["warmup", "full", "decoder_finetune"]
    assert (history["phase_name"] == "warmup").sum() == 5
    assert (history["phase_name"] == "decoder_finetune").sum() == 20
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project_copy / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("omics_vae").experiment_id])[0]
    assert run.data.tags["phase.0.warmup"].startswith("epochs 0-4")
    assert "phase.2.decoder_finetune" in run.data.tags
    steps = client.get_metric_history(run.info.run_id, "phase")
    assert [point.value for point in steps][-1] == 2
    assert _versions(project_copy, "data/08_reporting/loss_curves.png")
