"""One short `kedro run` shared by the notebook, browser and registry tests of a session.

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
    kedro(
        project,
        "run",
        "--pipelines",
        "training",
        "--params",
        ",".join((*FAST_TRAINING, "training.seed=1")),
    )
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
