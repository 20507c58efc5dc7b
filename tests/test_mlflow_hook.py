"""The project's kedro-mlflow hook ends a failed run's MLflow runs with the error's status:
KILLED for training stopped by a signal, FAILED otherwise, also when the parent run is
not active in this thread."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from kedro_mlflow.framework.hooks import MlflowHook

from omics_vae.hooks import ProjectMlflowHook
from omics_vae.models.interruption import TrainingInterrupted


@pytest.fixture
def store(tmp_path):
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    yield mlflow.MlflowClient()
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(previous)


def _hook_of(run_id: str) -> ProjectMlflowHook:
    hook = ProjectMlflowHook()
    hook._already_active_mlflow = False  # as its before_pipeline_run leaves it
    hook.run_id = run_id
    return hook


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (TrainingInterrupted("stopped by SIGTERM", signal_name="SIGTERM"), "KILLED"),
        (ValueError("a node failed"), "FAILED"),
    ],
)
def test_every_open_run_ends_with_the_errors_status(store, error, status):
    parent = mlflow.start_run()
    child = mlflow.start_run(nested=True)

    _hook_of(parent.info.run_id).on_pipeline_error(error, {}, None, None)

    assert mlflow.active_run() is None
    assert store.get_run(parent.info.run_id).info.status == status
    assert store.get_run(child.info.run_id).info.status == status


def test_a_parent_run_not_active_in_this_thread_is_ended_too(store):
    # kedro-mlflow 2's own handler raises UnboundLocalError here.
    parent = mlflow.start_run()
    mlflow.end_run()
    store.update_run(parent.info.run_id, "RUNNING")

    _hook_of(parent.info.run_id).on_pipeline_error(ValueError("x"), {}, None, None)

    assert store.get_run(parent.info.run_id).info.status == "FAILED"


def test_the_project_hook_replaces_the_plugins_own(monkeypatch):
    # Both registered would open two MLflow runs per `kedro run`, one nested in the other.
    project = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(project)
    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        plugins = session._hook_manager.get_plugins()
    mlflow_hooks = [plugin for plugin in plugins if isinstance(plugin, MlflowHook)]
    assert [type(hook) for hook in mlflow_hooks] == [ProjectMlflowHook]
