"""Kedro runs in the test process, through the session API, for tests that are not about
the `kedro` command line: a new `kedro` process spends about 10 s importing before it
reads a file, the session here reuses what the suite has imported.

Each run goes through ``bootstrap_project`` and ``KedroSession.create`` on the project
copy, exactly as `kedro run` does, with the project's hooks and plugins. What a run
changes in this process (working folder, import path, environment, MLflow's tracking URI,
active experiment and run, torch's threads, the sweep hooks' config loader) is put back
after it, so later tests see the process as it was.
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
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from omics_vae import sweeps


@contextmanager
def _project_process_state(project: Path) -> Iterator[None]:
    cwd, path, environ = Path.cwd(), list(sys.path), dict(os.environ)
    tracking_uri, threads = mlflow.get_tracking_uri(), torch.get_num_threads()
    # The experiment a run sets stays MLflow's default for this process (a module global
    # that no public call unsets): a later mlflow.start_run() on another store would
    # look for it there.
    experiment_id = mlflow.tracking.fluent._active_experiment_id
    loader = dict(sweeps._session)
    # As run_kedro does: the project's mlflow.yml says where runs go.
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ["KEDRO_DISABLE_TELEMETRY"] = "true"
    os.chdir(project)  # relative paths in the parameters (checkpoint_dir) are the project's
    try:
        yield
    finally:
        while mlflow.active_run() is not None:  # a failed run may leave one open
            mlflow.end_run("FAILED")
        os.chdir(cwd)
        sys.path[:] = path
        os.environ.clear()
        os.environ.update(environ)
        mlflow.set_tracking_uri(tracking_uri)
        mlflow.tracking.fluent._active_experiment_id = experiment_id
        torch.set_num_threads(threads)
        sweeps._session.clear()
        sweeps._session.update(loader)


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
