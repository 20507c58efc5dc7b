"""A short training in a process of its own, for the test that stops it with a real
``kill``: ``python -m tests.training.interruptible_training <checkpoint_dir>``.

It prints ``TRAINING`` once the first batch has run and sleeps a little after each batch
so the signal lands mid-training; the sleep changes no number.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import lightning as L

import omics_vae.models.trainer as trainer_module
from omics_vae.training.single_cell import train_model
from tests.tiny_training import fast_training_params, tiny_model_input

MAX_EPOCHS = 8


class SlowAndAnnounced(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step == 1:
            print("TRAINING", flush=True)
        time.sleep(0.05)


def params(checkpoint_dir: Path) -> dict:
    """The training parameters of the run, and of the run that resumes it."""
    training = fast_training_params(checkpoint_dir)
    training["trainer"].update(max_epochs=MAX_EPOCHS, early_stopping_patience=None)
    return training


def main(checkpoint_dir: str) -> None:
    build = trainer_module._build_trainer

    def slow(settings, run_dir, history, controller=None, extra=()):
        return build(settings, run_dir, history, controller, (*extra, SlowAndAnnounced()))

    trainer_module._build_trainer = slow
    train_model(tiny_model_input(), params(Path(checkpoint_dir)))
    print("FINISHED", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
