"""Work for the fault tests to kill with SIGKILL, each in a process of its own.

``python -m tests.faults.killable training <checkpoint_dir>``: the short training of
``tests.training.interruptible_training``, printing ``STEP <n>`` after each training batch
(a short pause after it lets the test's signal land there; it changes no number).

``python -m tests.faults.killable save <dataset_folder>``: a versioned ``H5ADDataset``
save that prints ``WRITTEN`` once the file is written under its partial name, then waits
to be killed before renaming it into place.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
from anndata import AnnData
from kedro.io.core import Version

import omics_vae.models.trainer as trainer_module
from omics_vae.datasets import H5ADDataset
from omics_vae.training.single_cell import train_model
from tests.tiny_training import tiny_model_input
from tests.training import interruptible_training

SAVED_VERSION = "2024-01-02T00.00.00.000Z"


class AnnounceEachStep(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        print(f"STEP {trainer.global_step}", flush=True)
        time.sleep(0.05)


def training(checkpoint_dir: Path) -> None:
    build = trainer_module._build_trainer

    def announced(settings, run_dir, history, controller=None, extra=()):
        return build(settings, run_dir, history, controller, (*extra, AnnounceEachStep()))

    trainer_module._build_trainer = announced
    train_model(tiny_model_input(), interruptible_training.params(checkpoint_dir))
    print("FINISHED", flush=True)


def save(dataset_folder: Path) -> None:
    write = AnnData.write_h5ad

    def write_then_wait(self, filename, **kwargs):
        write(self, filename, **kwargs)
        print("WRITTEN", flush=True)
        time.sleep(600)

    AnnData.write_h5ad = write_then_wait
    dataset = H5ADDataset(
        filepath=str(dataset_folder / "cells.h5ad"), version=Version(None, SAVED_VERSION)
    )
    dataset.save(AnnData(X=np.ones((50, 20), dtype=np.float32)))


if __name__ == "__main__":
    {"training": training, "save": save}[sys.argv[1]](Path(sys.argv[2]))
