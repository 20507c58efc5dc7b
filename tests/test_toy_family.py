"""A new data family is one declaration: the toy family of tests/toy_family.py, registered
here and nowhere else, runs end to end and as a sweep through a real Kedro session."""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.framework.startup import bootstrap_project

from omics_vae import sweeps
from omics_vae.families import FAMILIES, register_family
from tests.conftest import write_yaml
from tests.kedro_session import run_in_process
from tests.toy_family import TOY

pytestmark = pytest.mark.e2e


@pytest.fixture
def toy_project(project_copy, monkeypatch):
    """The project copy with the toy family registered, its data and its parameters."""
    register_family(TOY)
    # The session's config loader is remembered for the pipeline registry: forget it after.
    monkeypatch.setattr(sweeps, "_session", {})
    monkeypatch.chdir(project_copy)
    previous_store = mlflow.get_tracking_uri()
    rng = np.random.default_rng(0)
    raw = pd.DataFrame(
        rng.normal(size=(60, 8)) @ rng.normal(size=(8, 8)),
        index=[f"sample_{i}" for i in range(60)],
        columns=[f"feature_{j}" for j in range(8)],
    )
    raw.to_csv(project_copy / "data" / "01_raw" / "toy.csv")
    local = project_copy / "conf" / "local"
    write_yaml(
        local / "catalog.yml",
        {
            "toy_raw": {
                "type": "pandas.CSVDataset",
                "filepath": "data/01_raw/toy.csv",
                "load_args": {"index_col": 0},
            }
        },
    )
    write_yaml(
        local / "parameters_toy.yml",
        {"toy": {"training": {"n_components": 2, "seed": 0, "checkpoint_dir": "unused"}}},
    )
    write_yaml(
        local / "parameters_sweeps.yml",
        {
            "sweeps": {
                "toy_size": {
                    "family": "toy",
                    "grid": {"toy.training.n_components": [2, 4]},
                    "seeds": [0, 1],
                }
            },
            "sweep_comparison": {"metrics": ["toy/*"]},
        },
    )
    bootstrap_project(project_copy)
    yield project_copy
    FAMILIES.pop(TOY.name)
    mlflow.set_tracking_uri(previous_store)


def _run(project, pipeline: str) -> dict:
    return run_in_process(project, pipeline)


def test_a_family_declared_in_the_tests_runs_end_to_end_and_as_a_sweep(toy_project):
    outputs = _run(toy_project, "toy")
    assert outputs["toy_scores"].load()["toy/explained_variance"] > 0.5

    _run(toy_project, "sweep_toy_size")

    reports = toy_project / "data" / "08_reporting" / "sweeps" / "toy_size"
    scores = pd.read_csv(sorted(reports.glob("variant_scores.csv/*/variant_scores.csv"))[-1])
    assert sorted(scores["variant"]) == [
        "toy_size__n_components_2__seed_0",
        "toy_size__n_components_2__seed_1",
        "toy_size__n_components_4__seed_0",
        "toy_size__n_components_4__seed_1",
    ]
    by_size = scores.groupby("group")["toy/explained_variance"].mean()
    assert by_size["toy_size__n_components_4"] > by_size["toy_size__n_components_2"]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{toy_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("omics_vae").experiment_id
    children = client.search_runs([experiment], "tags.sweep = 'toy_size'")
    assert len(children) == 4
    assert {run.info.status for run in children} == {"FINISHED"}
    assert {run.data.params["toy.training.n_components"] for run in children} == {"2", "4"}

    # Re-running the whole sweep: every variant is done, so none is tracked or saved
    # again; the comparison is made anew from the results recomputed in memory.
    _run(toy_project, "sweep_toy_size")
    assert len(client.search_runs([experiment], "tags.sweep = 'toy_size'")) == 4
    rerun = client.search_runs([experiment], "tags.`sweep.variants` = '4'")[0]
    reused = {key for key in rerun.data.tags if key.startswith("sweep.reused.")}
    assert reused == {f"sweep.reused.{variant}" for variant in scores["variant"]}
    versions = sorted(reports.glob("variant_scores.csv/*/variant_scores.csv"))
    assert len(versions) == 2
    again = pd.read_csv(versions[-1])
    toy_scores = ["variant", "toy/explained_variance", "toy/reconstruction_error"]
    pd.testing.assert_frame_equal(again[toy_scores], scores[toy_scores])
