"""Kedro runs in the test process, through the session API, for tests that are not about
the `kedro` command line: a new `kedro` process spends about 10 s importing before it
reads a file, the session here reuses what the suite has imported.

Each run goes through ``bootstrap_project`` and ``KedroSession.create`` on the project
copy, exactly as `kedro run` does, with the project's hooks and plugins, from the state a
new process starts in. What a run changes in this process (working folder, import path,
environment, MLflow's tracking URI, active experiment and run, torch's threads, the sweep
hooks' config loader) is put back after it, so later tests see the process as it was.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
import torch
import yaml
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from mlflow.exceptions import MlflowException

from omics_vae import sweeps


@contextmanager
def _project_process_state(project: Path) -> Iterator[None]:
    cwd, path, environ = Path.cwd(), list(sys.path), dict(os.environ)
    threads, loader = torch.get_num_threads(), dict(sweeps._session)
    # MLflow's tracking URI and experiment as this process set them (None: not set), not
    # as MLflow resolves them: the session sets both (module globals that no public call
    # reads unresolved), and a later test on another store must not inherit them.
    tracking_uri = mlflow.tracking._tracking_service.utils._tracking_uri
    experiment_id = mlflow.tracking.fluent._active_experiment_id
    # As a new `kedro` process starts: the project's mlflow.yml says where runs go.
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    os.environ["KEDRO_DISABLE_TELEMETRY"] = "true"
    mlflow.set_tracking_uri(None)
    mlflow.tracking.fluent._active_experiment_id = None
    os.chdir(project)  # relative paths in the parameters (checkpoint_dir) are the project's
    # The project's store, named by its absolute path for this session: MLflow caches its
    # stores and database engines by URI as written, so the relative sqlite:///mlflow.db
    # of conf/base would send the runs of every later session in this process, in any
    # project copy, to the first copy's database.
    local_mlflow = project / "conf" / "local" / "mlflow.yml"
    if not local_mlflow.exists():
        store = {"mlflow_tracking_uri": f"sqlite:///{project.resolve() / 'mlflow.db'}"}
        local_mlflow.write_text(yaml.safe_dump({"server": store}))
    else:
        local_mlflow = None
    try:
        yield
    finally:
        # kedro-mlflow's node hooks push the run once per node; its after_pipeline_run
        # ends it (FINISHED) and pops one. The rest are popped keeping the status the
        # store has (a `kedro` process's exit does the same); one still RUNNING failed.
        while (run := mlflow.active_run()) is not None:
            mlflow.end_run(_stored_status(run.info.run_id))
        mlflow.set_tracking_uri(tracking_uri)  # None unsets it
        mlflow.tracking.fluent._active_experiment_id = experiment_id
        os.chdir(cwd)
        sys.path[:] = path
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)
        sweeps._session.clear()
        sweeps._session.update(loader)
        if local_mlflow is not None:
            local_mlflow.unlink()


def _stored_status(run_id: str) -> str:
    """How the store says ``run_id`` ended: FAILED if it is still RUNNING or unknown."""
    try:
        status = mlflow.MlflowClient().get_run(run_id).info.status
    except MlflowException:
        return "FAILED"
    return "FAILED" if status == "RUNNING" else status


def run_in_process(
    project: Path,
    *pipelines: str,
    params: dict[str, Any] | None = None,
    env: str | None = None,
    **run_args: Any,
) -> dict[str, Any]:
    """`kedro run --pipelines <pipelines> --params <params>` in this process.

    ``params`` has dotted keys, as ``--params`` does. Exceptions propagate as they are
    raised (the CLI would print them and exit non-zero). ``run_args`` go to
    ``KedroSession.run`` (``tags``, ``load_versions`` ...).
    """
    runtime_params = _nested(params) if params else None
    with _project_process_state(project):
        bootstrap_project(project)
        with KedroSession.create(
            project_path=project, env=env, runtime_params=runtime_params
        ) as session:
            return session.run(pipeline_names=list(pipelines) or None, **run_args)


def _nested(dotted: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` as ``{"a": {"b": 1}}``, the shape ``--params`` gives Kedro."""
    nested: dict[str, Any] = {}
    for key, value in dotted.items():
        *parents, leaf = key.split(".")
        block = nested
        for part in parents:
            block = block.setdefault(part, {})
        block[leaf] = value
    return nested
