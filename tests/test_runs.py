"""omics_vae.runs on a real (temporary) MLflow sqlite store with really trained models."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from mlflow import MlflowClient

from omics_vae import runs
from omics_vae.data.simulate import simulate_counts
from omics_vae.datasets import H5ADDataset, LightningCheckpointDataset
from omics_vae.pipelines.training.nodes import make_model_card
from omics_vae.training.single_cell import train_model
from tests.conftest import _copy_project, validated_block, write_yaml
from tests.kedro_session import run_in_process
from tests.short_run import FIRST_RUN_OUTPUT, kedro, short_run_project

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def tiny_model_input():
    """120 cells x 40 genes shaped like the data_processing output."""
    adata = simulate_counts(
        n_cells=120, n_genes=40, n_batches=2, n_cell_types=3, seed=2, low_quality_fraction=0.0
    )
    adata.layers["counts"] = adata.X.copy()
    adata.X = np.log1p(adata.X)
    split = np.random.default_rng(0).choice(["train", "val"], adata.n_obs, p=[0.8, 0.2])
    adata.obs["split"] = split
    adata.uns["data_processing"] = {"params": {"batch_key": "batch", "cell_type_key": "cell_type"}}
    return adata


def train_tiny(model_input, model: str, checkpoint_dir: Path, **hyperparameters: Any):
    """A really trained model (two epochs, tiny layers) and its card."""
    base = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_training.yml").read_text())
    params = copy.deepcopy(base["training"])
    params["model"] = model
    params["trainer"].update(max_epochs=2, batch_size=32, enable_progress_bar=False)
    params["hyperparameters"][model].update(n_hidden=8, **hyperparameters)
    params["checkpoint_dir"] = str(checkpoint_dir)
    trained, history, summary = train_model(model_input, params)
    return trained, make_model_card(summary, validated_block("training", params), history)


def log_training_run(
    tracking_uri: str,
    model,
    card: dict[str, Any],
    *,
    metrics: dict[str, float],
    tags: dict[str, str] | None = None,
    folder: Path,
) -> str:
    """Log a run the way `kedro run` does: flattened params, lineage tags, model/ files."""
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(runs.EXPERIMENT_NAME)
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(
            runs.EXPERIMENT_NAME, artifact_location=(folder / "artifacts").as_uri()
        )
    )
    run = client.create_run(experiment_id)
    run_id = run.info.run_id
    for key, value in _flatten({"training": card["parameters"]}).items():
        client.log_param(run_id, key, value)
    lineage = {
        "model_name": card["model"],
        "data_fingerprint": card["data"]["fingerprint"],
        "data_version": "2026-01-01T00.00.00.000Z",
        **(tags or {}),
    }
    for key, value in lineage.items():
        client.set_tag(run_id, key, value)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value)
    files = folder / run_id
    LightningCheckpointDataset(filepath=str(files / "model.ckpt")).save(model)
    (files / "model_card.yml").write_text(yaml.safe_dump(card))
    client.log_artifact(run_id, str(files / "model.ckpt"), artifact_path="model")
    client.log_artifact(run_id, str(files / "model_card.yml"), artifact_path="model")
    client.set_terminated(run_id)
    return run_id


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with three inVAE runs (two latent sizes), one scVI run, one untrained run."""
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    data = tiny_model_input()
    logged = {}
    for name, model, latent, score in (
        ("invae_30_low", "invae", 30, 0.61),
        ("invae_30_high", "invae", 30, 0.74),
        ("invae_10", "invae", 10, 0.80),
        ("scvi", "scvi_vae", None, 0.70),
    ):
        size = {"n_latent_bio": latent} if model == "invae" else {}
        trained, card = train_tiny(data, model, folder / "ckpt", **size)
        metrics = {"scib/total": score, "val/loss": 100 - 10 * score}
        logged[name] = log_training_run(uri, trained, card, metrics=metrics, folder=folder)
        logged[f"{name}_model"] = trained
    # A run that trained nothing (e.g. `kedro run --pipelines data_processing`).
    client = MlflowClient(tracking_uri=uri)
    experiment_id = client.get_experiment_by_name(runs.EXPERIMENT_NAME).experiment_id
    logged["untrained"] = client.create_run(experiment_id).info.run_id
    return uri, logged, data


def test_find_models_filters_on_hyperparameters_and_sorts_by_a_metric(store):
    uri, logged, _ = store
    table = runs.find_models("invae", hyperparameters={"n_latent_bio": 30}, tracking_uri=uri)

    assert list(table.run_id) == [logged["invae_30_high"], logged["invae_30_low"]]
    assert list(table.columns[:7]) == list(runs.SUMMARY_COLUMNS)
    assert list(table["metrics.scib/total"]) == [0.74, 0.61]
    assert set(table["params.training.hyperparameters.invae.n_latent_bio"]) == {"30"}
    assert table.model_uri.iloc[0] == f"runs:/{logged['invae_30_high']}/model"


def test_find_models_without_a_model_lists_every_trained_run_only(store):
    uri, logged, _ = store
    table = runs.find_models(sort_by="val/loss", ascending=True, tracking_uri=uri)

    assert logged["untrained"] not in set(table.run_id)
    assert list(table.run_id) == [
        logged[name] for name in ("invae_10", "invae_30_high", "scvi", "invae_30_low")
    ]
    assert set(table.model_name) == {"invae", "scvi_vae"}


def test_find_models_on_data_version_and_full_parameter_keys(store):
    uri, logged, _ = store
    same_data = runs.find_models(data_version="2026-01-01T00.00.00.000Z", tracking_uri=uri)
    assert len(same_data) == 4
    assert runs.find_models(data_version="another", tracking_uri=uri).empty
    scvi = runs.find_models(params={"training.model": "scvi_vae"}, tracking_uri=uri)
    assert list(scvi.run_id) == [logged["scvi"]]


def test_find_models_in_an_empty_store_is_an_empty_table(tmp_path):
    table = runs.find_models(tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}")
    assert table.empty
    assert list(table.columns) == list(runs.SUMMARY_COLUMNS)


def test_hyperparameters_need_a_model_name(store):
    with pytest.raises(ValueError, match="model='invae'"):
        runs.find_models(hyperparameters={"n_latent_bio": 30}, tracking_uri=store[0])


def _same_latents(first, second, data) -> None:
    np.testing.assert_allclose(
        first.get_latent(data)[first.corrected_latent],
        second.get_latent(data)[second.corrected_latent],
        rtol=1e-5,
        atol=1e-6,
    )


def test_load_model_by_run_id_and_by_runs_uri(store):
    uri, logged, data = store
    by_id = runs.load_model(logged["invae_10"], tracking_uri=uri)
    by_uri = runs.load_model(f"runs:/{logged['invae_10']}/model", tracking_uri=uri)

    assert by_id.registry_name == "invae"
    assert by_id.hparams["n_latent_bio"] == 10
    _same_latents(by_id, logged["invae_10_model"], data)
    _same_latents(by_uri, logged["invae_10_model"], data)
    card = runs.load_model_card(logged["scvi"], tracking_uri=uri)
    assert card["model"] == "scvi_vae"


def test_register_model_moves_the_alias_and_keeps_earlier_versions(store):
    uri, logged, data = store
    first = runs.register_model(logged["invae_30_high"], tracking_uri=uri, tags={"note": "a"})
    second = runs.register_model(logged["invae_10"], tracking_uri=uri)

    assert (first.name, second.name) == ("invae", "invae")
    assert int(second.version) == int(first.version) + 1
    assert first.tags["note"] == "a"
    assert first.tags["scib/total"] == "0.74"
    assert first.tags["data_version"] == "2026-01-01T00.00.00.000Z"
    assert first.run_id == logged["invae_30_high"]
    champion = runs.load_model("models:/invae@champion", tracking_uri=uri)
    _same_latents(champion, logged["invae_10_model"], data)
    pinned = runs.load_model(f"models:/invae/{first.version}", tracking_uri=uri)
    _same_latents(pinned, logged["invae_30_high_model"], data)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    assert client.get_model_version_by_alias("invae", "champion").version == second.version


def test_register_model_names_one_registered_model_per_family(store):
    uri, logged, _ = store
    version = runs.register_model(logged["scvi"], alias="baseline", tracking_uri=uri)
    assert version.name == "scvi_vae"
    assert version.aliases == ["baseline"]


def test_what_cannot_be_found_is_named(store):
    uri, logged, _ = store
    with pytest.raises(runs.ModelNotFoundError, match="models:/invae@nobody"):
        runs.load_model("models:/invae@nobody", tracking_uri=uri)
    with pytest.raises(runs.ModelNotFoundError, match="trained no model"):
        runs.register_model(logged["untrained"], tracking_uri=uri)
    with pytest.raises(runs.ModelNotFoundError, match="only runs that trained a model"):
        runs.load_model(logged["untrained"], tracking_uri=uri)
    with pytest.raises(runs.ModelNotFoundError, match="neither a run id"):
        runs.load_model("best-model", tracking_uri=uri)


def test_a_relative_sqlite_store_is_found_from_the_project_root(tmp_path, monkeypatch):
    (tmp_path / "pyproject.toml").write_text("[tool.kedro]\npackage_name = 'x'\n")
    for env, uri in (("base", "sqlite:///mlflow.db"), ("local", "sqlite:///tracking/runs.db")):
        (tmp_path / "conf" / env).mkdir(parents=True)
        (tmp_path / "conf" / env / "mlflow.yml").write_text(
            yaml.safe_dump({"server": {"mlflow_tracking_uri": uri}})
        )
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")

    assert runs.find_project_root() == tmp_path
    assert runs.configured_tracking_uri(tmp_path) == "sqlite:///tracking/runs.db"
    assert runs.configured_tracking_uri(tmp_path, env="base") == "sqlite:///mlflow.db"
    assert runs.tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert runs.tracking_uri("http://mlflow:5000") == "http://mlflow:5000"


@pytest.mark.e2e
def test_kedro_embeds_with_the_registered_champion(tmp_path_factory):
    """A colleague's clone shares only the MLflow store: no checkpoint, its own data."""
    trained = short_run_project(tmp_path_factory)
    uri = f"sqlite:///{trained / 'mlflow.db'}"
    # The YAML leaves n_latent_bio to inVAE's declaration; the run logged its value.
    seed_0 = runs.find_models(
        "invae", hyperparameters={"n_latent_bio": 30}, params={"training.seed": 0}, tracking_uri=uri
    )
    runs.register_model(seed_0.run_id.iloc[0], alias="champion", tracking_uri=uri)
    clone = _copy_project(tmp_path_factory.mktemp("clone") / "project")
    write_yaml(clone / "conf/local/mlflow.yml", {"server": {"mlflow_tracking_uri": uri}})

    # The clone processes its own data in this process (a Kedro session, sparing a new
    # process's imports); the documented embedding command runs as a user runs it.
    run_in_process(clone, "data_processing")
    kedro(clone, "run", "--pipelines", "embedding", "--params", f"embedding.model_uri={CHAMPION}")

    assert not any((clone / "data/06_models").iterdir())
    info = yaml.safe_load(_latest(clone / "data/07_model_output/embedding_info.yml").read_text())
    assert info["model_uri"] == CHAMPION
    assert info["seed"] == 0  # the registered seed-0 model, not the trained copy's latest (1)
    assert info["versions"]["model"] is None
    assert info["data"]["fingerprint"] == info["data"]["trained_on_fingerprint"]
    model_input = H5ADDataset(filepath=str(_latest(clone / "data/05_model_input/model_input.h5ad")))
    embeddings = H5ADDataset(filepath=str(_latest(clone / "data/07_model_output/embeddings.h5ad")))
    champion = runs.load_model(CHAMPION, tracking_uri=uri)
    _same_latents_as_embedding(champion, model_input.load(), embeddings.load())


CHAMPION = "models:/invae@champion"


def _latest(versioned: Path) -> Path:
    """The newest version's file of a Kedro versioned dataset."""
    return sorted(versioned.glob("*/*"))[-1]


def _same_latents_as_embedding(model, model_input, embeddings) -> None:
    assert list(embeddings.obs_names) == list(model_input.obs_names)
    np.testing.assert_allclose(
        embeddings.obsm["X_invae"],
        model.get_latent(model_input)[model.corrected_latent],
        rtol=1e-5,
        atol=1e-6,
    )


@pytest.mark.e2e
def test_a_finished_run_says_what_it_made(tmp_path_factory):
    """The end of `kedro run`: what trained, scores against the baseline, the files of the
    new versions, the MLflow run; every line readable at 100 columns."""
    project = short_run_project(tmp_path_factory)
    output = (project.parent / FIRST_RUN_OUTPUT).read_text()
    summary = output[output.index("--- omics-vae: what this run made (__default__)") :]
    lines = summary.splitlines()

    assert max(map(len, lines)) <= 100
    assert re.search(r"^Trained invae: \d+ epochs, best val loss -?\d+\.\d\d", summary, re.M)
    assert re.search(
        r"^scib total \(higher is better\): invae 0\.\d{3} \| pca 0\.\d{3}", summary, re.M
    )
    assert re.search(
        r"^label transfer accuracy: labelled, held out [01]\.\d{3} \([\d,]+ cells\)", summary, re.M
    )
    run_id = re.search(r"^MLflow run (\w{32}) \(experiment 'omics_vae'\)$", summary, re.M)[1]
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    assert client.get_run(run_id).data.tags["model_name"] == "invae"
    # The QC of the data the model was trained on is part of the run.
    logged = {
        a.path for folder in ("figures", "reports") for a in client.list_artifacts(run_id, folder)
    }
    assert {"figures/qc_metrics.png", "reports/qc_summary.csv"} <= logged
    assert "kedro mlflow ui" in summary
    version = re.search(r"^New versions, saved as version (\S+) ", summary, re.M)[1]
    listed = _listed_versions(lines)
    assert {"model", "model_card", "embeddings", "scib_results", "model_input"} <= set(listed)
    catalog = yaml.safe_load((project / "conf/base/catalog.yml").read_text())
    for name in ("model", "embeddings", "scib_results"):
        file = Path(catalog[name]["filepath"])
        assert listed[name] == str(file.parent)
        assert (project / file / version / file.name).is_file()


def _listed_versions(lines: list[str]) -> dict[str, str]:
    """``{dataset: folder}`` from the summary's version lines (long ones wrap)."""
    listed, folder = {}, None
    for line in lines[1 + next(i for i, x in enumerate(lines) if x.startswith("New versions")) :]:
        names = line
        if line.startswith("  data/"):
            folder, names = line.split(maxsplit=1)
        elif not line.startswith("    "):
            break
        listed.update(dict.fromkeys(names.strip().strip(",").split(", "), folder))
    return listed


@pytest.mark.e2e
def test_the_experiment_describes_itself_in_mlflow_and_in_its_records(tmp_path_factory):
    project = short_run_project(tmp_path_factory)
    described = yaml.safe_load((project / "conf/base/experiment.yml").read_text())
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("omics_vae")

    # The MLflow UI opens it on model development (not the GenAI view) with its description.
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"] == described["description"]
    trained = client.search_runs([experiment.experiment_id], "tags.model_name = 'invae'")
    assert trained
    assert all(run.data.tags["experiment.version"] == described["version"] for run in trained)
    for record in ("data/06_models/model_card.yml", "data/07_model_output/embedding_info.yml"):
        written = yaml.safe_load(_latest(project / record).read_text())
        assert written["experiment"]["name"] == "omics_vae"
        assert written["experiment"]["description"] == described["description"]
