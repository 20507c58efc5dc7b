"""Sweeps through `kedro run`, in a temporary copy of the project, as a user runs them.

Runs whose command line is not under test (re-runs, a reference run, a refused sweep) are
Kedro sessions in this process (tests/kedro_session.py), sparing a new process's imports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from omics_vae.sweeps import SweepError
from tests.conftest import (
    use_pbmc_3chem,
    use_quick_metrics,
    use_small_simulated_counts,
    write_yaml,
)
from tests.kedro_session import run_in_process

pytestmark = pytest.mark.e2e

FAST_PARAMS = {
    "training.trainer.max_epochs": 3,
    "training.trainer.batch_size": 256,
    "training.trainer.num_threads": 1,
}
FAST = ",".join(f"{key}={value}" for key, value in FAST_PARAMS.items())


def _sweep(project: Path, name: str, sweep: dict) -> None:
    write_yaml(project / "conf" / "local" / "parameters_sweeps.yml", {"sweeps": {name: sweep}})


def _latest(project: Path, relative: str) -> Path:
    return sorted((project / relative).glob("*/*"))[-1]


def _summaries(project: Path, name: str = "training_summary.json") -> dict[str, dict]:
    folder = project / "data" / "06_models" / "sweeps"
    return {
        variant.name: json.loads(
            _latest(project, f"{variant.relative_to(project)}/{name}").read_text()
        )
        for variant in sorted(folder.iterdir())
        if (variant / name).exists()
    }


def _runs(project: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("omics_vae")
    return client.search_runs([experiment.experiment_id])


def test_a_sweep_on_pbmc_tracks_each_variant_compares_them_and_never_trains_twice(
    project_copy, kedro_cli, pbmc_3chem_path
):
    use_pbmc_3chem(project_copy, pbmc_3chem_path)
    use_quick_metrics(project_copy)  # the sweep's tracking is under test, not scib-metrics
    grid = {"training.hyperparameters.invae.n_latent_bio": [8, 16]}
    _sweep(project_copy, "size", {"grid": grid, "seeds": [0, 1]})

    kedro_cli("run", "--pipelines", "sweep_size", "--params", FAST)

    runs = _runs(project_copy)
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(parents) == 1
    assert len(children) == 4
    parent = parents[0]
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert child.data.tags["sweep"] == "size"
        assert child.data.tags["data_version"]
        variant = child.data.tags["sweep.variant"]
        size = variant.split("__")[1].removeprefix("n_latent_bio_")
        # The keys of a plain run, so MLflow's Compare lines the variants up.
        assert child.data.params["training.hyperparameters.invae.n_latent_bio"] == size
        assert child.data.params["training.seed"] == child.data.tags["sweep.seed"]
        assert {"val/loss", "scib/total"} <= set(child.data.metrics)
        assert not any(key.startswith(variant) for key in child.data.metrics)
    assert {"scib/total", "val/loss"}.isdisjoint(parent.data.metrics)

    reports = project_copy / "data" / "08_reporting" / "sweeps" / "size"
    scores = pd.read_csv(_latest(project_copy, "data/08_reporting/sweeps/size/variant_scores.csv"))
    assert len(scores) == 4
    assert scores["scib/total"].between(0, 1).all()
    summary = pd.read_csv(_latest(project_copy, "data/08_reporting/sweeps/size/summary.csv"))
    assert list(summary["group"]) == ["size__n_latent_bio_8", "size__n_latent_bio_16"]
    assert (summary["n_seeds"] == 2).all()
    tests = pd.read_csv(_latest(project_copy, "data/08_reporting/sweeps/size/pairwise_tests.csv"))
    assert set(tests["metric"]) >= {"scib/total", "training/best_val_loss"}
    assert (tests["n_seeds"] == 2).all()
    assert _latest(project_copy, "data/08_reporting/sweeps/size/comparison.png").stat().st_size
    assert reports.exists()

    # Re-running the training stage finds every variant done with the same data and
    # parameters: nothing is trained, tracked or saved again (the whole sweep re-run, with
    # its comparison from memory, is in tests/test_toy_family.py). The re-runs are Kedro
    # sessions in this process (the command is run in tests/short_run.py).
    summaries = _summaries(project_copy)
    run_in_process(project_copy, "sweep_size", tags=["training"], params=FAST_PARAMS)
    runs = _runs(project_copy)
    assert len([run for run in runs if "mlflow.parentRunId" in run.data.tags]) == 4
    rerun = next(run for run in runs if run.info.run_id not in {r.info.run_id for r in parents})
    reused = {key for key in rerun.data.tags if key.startswith("sweep.reused.")}
    assert reused == {f"sweep.reused.{child.data.tags['sweep.variant']}" for child in children}
    assert _summaries(project_copy) == summaries  # no new versions of the models' records

    # A new seed trains only the new variants, in new child runs.
    _sweep(project_copy, "size", {"grid": grid, "seeds": [0, 1, 2]})
    run_in_process(project_copy, "sweep_size", tags=["training"], params=FAST_PARAMS)
    new_children = [
        run
        for run in _runs(project_copy)
        if "mlflow.parentRunId" in run.data.tags
        and run.info.run_id not in {child.info.run_id for child in children}
    ]
    assert sorted(run.data.tags["sweep.variant"] for run in new_children) == [
        "size__n_latent_bio_16__seed_2",
        "size__n_latent_bio_8__seed_2",
    ]
    latest = _summaries(project_copy)
    assert not latest["size__n_latent_bio_8__seed_2"]["reused_from_run"]


def test_parallel_runner_runs_the_variants_in_processes_with_the_sequential_results(
    project_copy, kedro_cli
):
    use_small_simulated_counts(
        project_copy,
        {
            "hvg": {"n_top_genes": 200},
            "qc": {"min_genes_per_cell": 20, "min_counts_per_cell": 50},
        },
    )
    use_quick_metrics(project_copy)
    _sweep(project_copy, "tiny", {"grid": {"training.hyperparameters.invae.n_latent_bio": [4, 8]}})
    fast = "training.trainer.max_epochs=3,training.trainer.batch_size=64"

    kedro_cli("run", "--pipelines", "sweep_tiny", "--runner", "ParallelRunner", "--params", fast)
    parallel = _summaries(project_copy)
    runs = _runs(project_copy)
    assert len(runs) == 3  # the parent and one child per variant, nothing stray
    assert sum("mlflow.parentRunId" in run.data.tags for run in runs) == 2
    assert all(run.info.status == "FINISHED" for run in runs)

    # The sequential reference: a Kedro session in this process.
    sequential_params = {
        "training.trainer.max_epochs": 3,
        "training.trainer.batch_size": 64,
        "training.trainer.num_threads": 1,
        "force_retrain": True,
    }
    run_in_process(project_copy, "sweep_tiny", tags=["training"], params=sequential_params)
    sequential = _summaries(project_copy)
    assert (
        set(sequential)
        == set(parallel)
        == {"tiny__n_latent_bio_4__seed_0", "tiny__n_latent_bio_8__seed_0"}
    )
    for variant, summary in sequential.items():
        assert summary["reused_from_run"] is None
        assert summary["best_val_loss"] == pytest.approx(
            parallel[variant]["best_val_loss"], rel=1e-5
        )


def test_a_paired_sweep_runs_the_joint_vae_variants_and_compares_their_imputation(
    project_copy, kedro_cli
):
    _sweep(
        project_copy,
        "joint",
        {"family": "paired", "grid": {"paired.training.hyperparameters.n_latent": [4, 8]}},
    )
    fast = "paired.training.trainer.max_epochs=3,paired.training.trainer.num_threads=1"

    kedro_cli("run", "--pipelines", "sweep_joint", "--params", fast)

    children = [run for run in _runs(project_copy) if "mlflow.parentRunId" in run.data.tags]
    assert len(children) == 2
    for child in children:
        assert child.data.params["paired.training.hyperparameters.n_latent"] in {"4", "8"}
        assert any(
            key.startswith("paired/") and key.endswith("/pearson") for key in child.data.metrics
        )
    scores = pd.read_csv(_latest(project_copy, "data/08_reporting/sweeps/joint/variant_scores.csv"))
    pearson = [
        column for column in scores if column.startswith("paired/") and column.endswith("/pearson")
    ]
    assert len(pearson) == 2  # both directions
    assert scores[pearson].notna().all().all()
    summaries = _summaries(project_copy, "paired_training_summary.json")
    assert set(summaries) == {"joint__n_latent_4__seed_0", "joint__n_latent_8__seed_0"}


def test_an_invalid_sweep_stops_the_run_before_anything_is_processed(project_copy):
    _sweep(project_copy, "bad", {"grid": {"training.hyperparameters.invae.n_latent_bi": [8]}})

    # A Kedro session in this process: the refusal, not the command line, is under test.
    message = "'n_latent_bi' is not a key of 'training.hyperparameters.invae'"
    with pytest.raises(SweepError, match=re.escape(message)):
        run_in_process(project_copy, "sweep_bad")

    assert not list((project_copy / "data" / "05_model_input").iterdir())
