"""One short `kedro run` shared by the notebook, browser, registry, paired and viz tests of a
session.

Not a conftest fixture (conftest.py is shared by the whole suite): each test module wraps
``short_run_project`` in a fixture of its own, and the project it made is found again in
the session's temporary folder, so the runs happen once per pytest session.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import _copy_project, run_kedro, write_yaml
from tests.kedro_session import run_in_process

# A few epochs, one thread (the machines running the suite are shared): a minute on 2 cores.
FAST_TRAINING = (
    "training.trainer.max_epochs=3",
    "training.trainer.batch_size=256",
    "training.trainer.num_threads=1",
)
# A sweep of two variants whose training stage the short run runs after the plain runs:
# two MLflow child runs (tag ``sweep.variant``) to compare side by side.
SWEEP = "compare"
# What the first `kedro run` printed, beside the project.
FIRST_RUN_OUTPUT = "first_run.out"
SWEEP_GRID = {"training.hyperparameters.invae.n_latent_bio": [8, 16]}


def _dotted(overrides: tuple[str, ...]) -> dict[str, int]:
    """``("a.b=3", ...)`` as ``{"a.b": 3, ...}`` (the overrides here are integers)."""
    return {key: int(value) for key, value in (item.split("=") for item in overrides)}


def kedro(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """`kedro <args>` in ``project`` as a user runs it; fails the test on a non-zero exit."""
    return run_kedro(project, *args, timeout=timeout)


def short_run_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy after `kedro run` (seed 0), a second training run (seed 1), and the
    training stage of a sweep of two variants (n_latent_bio 8 and 16, seed 0).

    In its mlflow.db: two plain trained runs (the latest catalog checkpoint is seed 1's),
    and a parent run with two child runs, so run comparisons have something to compare.
    ``OMICS_VAE_SHORT_RUN=<folder>`` reuses a project made earlier (for working on the
    tests that use it).
    """
    if os.environ.get("OMICS_VAE_SHORT_RUN"):
        return Path(os.environ["OMICS_VAE_SHORT_RUN"])
    root = tmp_path_factory.getbasetemp() / "short_run"
    project = root / "project"
    done = root / "done"
    if done.exists():
        return project
    if root.exists():
        pytest.fail(f"An earlier short run in {root} did not finish; see its first failure.")
    _copy_project(project)
    first = kedro(project, "run", "--params", ",".join(FAST_TRAINING))
    (root / FIRST_RUN_OUTPUT).write_text(first.stdout)
    # The second training as a Kedro session in this process (`kedro run --pipelines
    # training` itself runs in tests/test_end_to_end.py): no new process's imports.
    run_in_process(project, "training", params={**_dotted(FAST_TRAINING), "training.seed": 1})
    write_yaml(
        project / "conf" / "local" / "parameters_sweeps.yml",
        {"sweeps": {SWEEP: {"grid": SWEEP_GRID, "seeds": [0]}}},
    )
    kedro(
        project,
        "run",
        "--pipelines",
        f"sweep_{SWEEP}",
        "--tags",
        "training",
        "--params",
        ",".join(FAST_TRAINING),
    )
    done.touch()
    return project


# The paired family's short run: a few epochs on the simulated default (~30 s on 2 cores).
FAST_PAIRED = ("paired.training.trainer.max_epochs=3", "paired.training.trainer.num_threads=1")


def paired_short_run(project: Path) -> Path:
    """``kedro run --pipelines paired`` once in the shared short-run project, on demand.

    Only the tests that read the paired outputs (the paired notebook) pay for it.
    """
    done = project.parent / "paired_done"
    if not done.exists():
        kedro(project, "run", "--pipelines", "paired", "--params", ",".join(FAST_PAIRED))
        done.touch()
    return project


def viz_build(project: Path) -> Path:
    """`kedro viz build` once in the shared short-run project, on demand: its build folder,
    shared by the test of the export and the browser's look at it."""
    done = project.parent / "viz_done"
    if not done.exists():
        kedro(project, "viz", "build")
        done.touch()
    return project / "build"
