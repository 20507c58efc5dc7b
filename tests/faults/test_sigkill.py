"""Fault injection: SIGKILL at points a test cannot choose well by hand.

- A training killed at five random batches resumes (``resume_from: last``) to the same
  losses and weights as the training that was never killed.
- A versioned save killed after writing its file, before renaming it into place, leaves
  no version a load would see, and the next save removes what it left.
"""

from __future__ import annotations

import math
import random
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from anndata import AnnData
from kedro.io.core import Version

from omics_vae.datasets import H5ADDataset
from omics_vae.training.single_cell import train_model
from tests.faults.killable import SAVED_VERSION
from tests.tiny_training import PROJECT_ROOT, assert_resumed_like_uninterrupted, tiny_model_input
from tests.training import interruptible_training


def _training_steps() -> tuple[int, int]:
    """Batches per epoch and in all, of the training the tests kill."""
    cells = int((tiny_model_input().obs["split"] == "train").sum())
    trainer = interruptible_training.params(Path("unused"))["trainer"]
    per_epoch = math.ceil(cells / trainer["batch_size"])
    return per_epoch, per_epoch * interruptible_training.MAX_EPOCHS


STEPS_PER_EPOCH, STEPS = _training_steps()
# After the first epoch's checkpoint (there is one to resume from), before the last batch.
KILL_STEPS = sorted(random.Random(20261202).sample(range(STEPS_PER_EPOCH + 1, STEPS), 5))


def _start(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults.killable", *args],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def _kill_after(child: subprocess.Popen, line: str) -> None:
    """SIGKILL ``child`` once it has printed ``line`` (it never gets to finish)."""
    try:
        for printed in child.stdout:
            if printed.strip() == line:
                child.send_signal(signal.SIGKILL)
                break
        else:
            pytest.fail(f"the process ended without printing {line!r}")
        child.wait(timeout=60)
    finally:
        child.kill()
    assert child.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    params = interruptible_training.params(tmp_path_factory.mktemp("uninterrupted"))
    model, history, _ = train_model(tiny_model_input(), params)
    return model, history


@pytest.mark.faults
@pytest.mark.parametrize("step", KILL_STEPS, ids=[f"step-{step}" for step in KILL_STEPS])
def test_a_training_killed_at_a_random_batch_resumes_to_the_same_weights(
    tmp_path, step, uninterrupted
):
    _kill_after(_start("training", str(tmp_path)), f"STEP {step}")

    params = interruptible_training.params(tmp_path)
    resumed, history, summary = train_model(tiny_model_input(), {**params, "resume_from": "last"})

    assert summary["resumed_from"] is not None
    assert_resumed_like_uninterrupted(resumed, history, *uninterrupted)


@pytest.mark.faults
def test_a_save_killed_before_its_rename_leaves_no_version_and_is_cleaned_up(tmp_path):
    folder = tmp_path / "cells.h5ad"
    earlier = AnnData(X=np.zeros((5, 3), dtype=np.float32))
    H5ADDataset(filepath=str(folder), version=Version(None, "2024-01-01T00.00.00.000Z")).save(
        earlier
    )

    _kill_after(_start("save", str(tmp_path)), "WRITTEN")

    left = [path for path in folder.rglob("*") if path.is_file()]
    assert any(".partial" in path.name for path in left)  # the killed writer's file
    assert not (folder / SAVED_VERSION / "cells.h5ad").exists()
    latest = H5ADDataset(filepath=str(folder), version=Version(None, None)).load()
    assert latest.shape == earlier.shape  # a load sees the earlier version only

    H5ADDataset(filepath=str(folder), version=Version(None, "2024-01-03T00.00.00.000Z")).save(
        earlier
    )
    assert not [path for path in folder.rglob("*") if ".partial" in path.name]
