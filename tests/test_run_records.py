"""Runs of killed processes are closed at the next start; half-saved stages are set aside."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from omics_vae.run_records import (
    CLOSED_TAG,
    PID_TAG,
    PROCESS_START_TAG,
    SET_ASIDE_SUFFIX,
    close_runs_of_ended_processes,
    incomplete_groups,
    process_tags,
    set_aside,
)


@pytest.fixture
def client(tmp_path):
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")


def _ended_process_tags() -> dict[str, str]:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return {**process_tags(), PID_TAG: str(process.pid)}


def _running(client, tags: dict[str, str]) -> str:
    experiment = client.get_experiment_by_name("Default").experiment_id
    return client.create_run(experiment, tags=tags).info.run_id


def test_runs_of_an_ended_process_are_marked_killed_and_live_ones_left_alone(client):
    killed = _running(client, _ended_process_tags())
    alive = _running(client, process_tags())
    # A live PID that now belongs to another process (started at another time).
    reused_pid = _running(client, {**process_tags(), PROCESS_START_TAG: "1"})
    other_host = _running(client, {**_ended_process_tags(), "omics_vae.host": "elsewhere"})

    closed = close_runs_of_ended_processes(client)

    assert sorted(closed) == sorted([killed, reused_pid])
    assert client.get_run(killed).info.status == "KILLED"
    assert client.get_run(killed).info.end_time is not None
    assert "had ended" in client.get_run(killed).data.tags[CLOSED_TAG]
    assert client.get_run(alive).info.status == "RUNNING"
    assert client.get_run(other_host).info.status == "RUNNING"
    assert close_runs_of_ended_processes(client) == []


def test_only_stages_that_saved_some_but_not_all_outputs_are_incomplete(tmp_path):
    expected = {
        "processing": {"model_input", "qc_summary", "qc_figure"},
        "training": {"model", "model_card"},
        "evaluation": {"scib_results"},
    }
    saved = {"qc_summary": tmp_path / "a", "model": tmp_path / "b", "model_card": tmp_path / "c"}
    assert incomplete_groups(expected, saved) == {"processing": ["qc_summary"]}


def test_set_aside_renames_in_place_and_keeps_the_content(tmp_path):
    version = tmp_path / "qc_summary.csv" / "2026-01-01T00.00.00.000Z"
    version.mkdir(parents=True)
    saved = version / "qc_summary.csv"
    saved.write_text("kept")

    moved = set_aside([saved, tmp_path / "never-written.csv"])

    assert moved == [version / f"qc_summary.csv{SET_ASIDE_SUFFIX}"]
    assert moved[0].read_text() == "kept"
    assert not list(Path(tmp_path / "qc_summary.csv").glob("*/qc_summary.csv"))
