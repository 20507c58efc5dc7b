"""Fault injection: two `kedro run`s in one project at once, against one MLflow store."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

RUN = (
    "run",
    "--pipelines",
    "data_processing,training",
    "--params",
    "training.trainer.max_epochs=2,training.trainer.num_threads=1",
)


def _start_kedro(project: Path) -> subprocess.Popen:
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [sys.executable, "-m", "kedro", *RUN],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.faults
@pytest.mark.e2e
def test_two_runs_at_once_both_finish_or_one_refuses_and_the_store_stays_sound(project_copy):
    runs = [_start_kedro(project_copy), _start_kedro(project_copy)]
    outputs = [run.communicate(timeout=900)[0] for run in runs]

    finished = [run.returncode == 0 for run in runs]
    for ok, output in zip(finished, outputs, strict=True):
        # A run that did not finish refused with one message, not a crash.
        assert ok or ("Error: " in output and "Traceback" not in output), output[-3000:]
    assert any(finished), outputs[0][-3000:]

    store = project_copy / "mlflow.db"
    with sqlite3.connect(store) as connection:
        assert connection.execute("pragma integrity_check").fetchall() == [("ok",)]
    client = mlflow.MlflowClient(f"sqlite:///{store}")
    experiment = client.get_experiment_by_name("omics_vae")
    tracked = client.search_runs([experiment.experiment_id])
    assert sum(run.info.status == "FINISHED" for run in tracked) >= sum(finished)
    assert not [run for run in tracked if run.info.status == "RUNNING"]
    inputs = project_copy / "data/05_model_input/model_input.h5ad"
    assert len(list(inputs.glob("*/model_input.h5ad"))) == sum(finished)
