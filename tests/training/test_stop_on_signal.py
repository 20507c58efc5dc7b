"""SIGTERM and Ctrl-C stop a training after the running batch, write a checkpoint that
``resume_from: last`` continues exactly, and end with ``TrainingInterrupted``."""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

import omics_vae.models.trainer as trainer_module
from omics_vae.models.interruption import TrainingInterrupted
from omics_vae.training.single_cell import train_model
from tests.tiny_training import PROJECT_ROOT, assert_resumed_like_uninterrupted, tiny_model_input
from tests.training import interruptible_training


class SendSignal(L.Callback):
    """Sends the process ``signum`` as training batch ``batch`` of ``epoch`` starts, or
    once it has ended (``at_end``: after every other callback's batch-end hook)."""

    def __init__(self, signum: int, epoch: int, batch: int, at_end: bool = False) -> None:
        self.signum, self.epoch, self.batch, self.at_end = signum, epoch, batch, at_end
        self.sent = False

    def _send(self, trainer, batch_idx: int) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch) and not self.sent:
            self.sent = True
            signal.raise_signal(self.signum)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if not self.at_end:
            self._send(trainer, batch_idx)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.at_end:
            self._send(trainer, batch_idx)


@pytest.fixture
def signal_at(monkeypatch):
    """Makes the next fit receive a signal at the start (or the end) of a given batch."""

    def send(signum: int, epoch: int, batch: int, at_end: bool = False) -> None:
        build = trainer_module._build_trainer

        def build_with_a_signal(settings, run_dir, history, controller=None, extra=()):
            sender = SendSignal(signum, epoch, batch, at_end)
            callbacks = (*extra, sender) if at_end else (sender, *extra)
            return build(settings, run_dir, history, controller, callbacks)

        monkeypatch.setattr(trainer_module, "_build_trainer", build_with_a_signal)

    return send


def _params(training_params: dict, **changes) -> dict:
    params = copy.deepcopy(training_params)
    params["trainer"].update(max_epochs=4, early_stopping_patience=None)
    params.update(changes)
    return params


@pytest.mark.parametrize(
    "sent",
    [
        (signal.SIGTERM, "SIGTERM", False),
        (signal.SIGINT, "Ctrl-C (SIGINT)", False),
        # After this project's batch-end hook: Lightning's own stop, checkpointed too.
        (signal.SIGTERM, "SIGTERM", True),
    ],
    ids=["sigterm", "ctrl-c", "sigterm-after-the-batch-end-hooks"],
)
def test_a_signal_stops_after_the_batch_and_resume_matches_an_uninterrupted_run(
    model_input, training_params, signal_at, monkeypatch, sent
):
    signum, name, at_end = sent
    params = _params(training_params)
    uninterrupted, full_history, _ = train_model(model_input, params)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    signal_at(signum, epoch=1, batch=2, at_end=at_end)

    with pytest.raises(TrainingInterrupted) as stopped:
        train_model(model_input, params)
    monkeypatch.undo()

    error = stopped.value
    assert error.signal_name == name
    assert error.mlflow_status == "KILLED"
    assert str(error).startswith(f"Training stopped by {name} at epoch 1, batch 3 of ")
    assert error.checkpoint.name == "last.ckpt"
    assert error.checkpoint.is_file()
    assert "run again with training.resume_from: last" in str(error)
    checkpoint = torch.load(error.checkpoint, weights_only=True)
    assert checkpoint["epoch"] == 1  # mid-epoch, not the end of epoch 0
    # The process's own handlers are back once training stopped.
    assert {s: signal.getsignal(s) for s in handlers} == handlers

    resumed, history, summary = train_model(model_input, {**params, "resume_from": "last"})

    assert Path(summary["resumed_from"]) == error.checkpoint
    assert list(history["epoch"]) == [0, 1, 2, 3]
    assert_resumed_like_uninterrupted(resumed, history, uninterrupted, full_history)


def test_a_signal_on_the_last_batch_lets_the_epoch_and_training_finish_first(
    model_input, training_params, signal_at
):
    params = _params(training_params)
    n_train = int((model_input.obs["split"] == "train").sum())
    last_batch = -(-n_train // params["trainer"]["batch_size"]) - 1
    signal_at(signal.SIGTERM, epoch=3, batch=last_batch)

    with pytest.raises(TrainingInterrupted) as stopped:
        train_model(model_input, params)

    # The last epoch ended with its validation and checkpoint: nothing is left to train.
    checkpoint = torch.load(stopped.value.checkpoint, weights_only=True)
    assert checkpoint["epoch"] == 3
    assert "val/loss" in checkpoint["callbacks"]["HistoryState"]["rows"]["3"]


def test_kill_stops_a_training_process_which_exits_non_zero_and_resumes(tmp_path):
    """`kill <pid>` used to leave Lightning logging "Received SIGTERM" while the process
    went on, or exiting 0 as if it had finished."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.training.interruptible_training", str(tmp_path)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "TRAINING"
        child.send_signal(signal.SIGTERM)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        child.kill()

    assert child.returncode != 0
    assert "FINISHED" not in stdout
    assert "TrainingInterrupted: Training stopped by SIGTERM at epoch" in stderr
    checkpoints = list(tmp_path.rglob("last.ckpt"))
    assert len(checkpoints) == 1

    params = interruptible_training.params(tmp_path)
    _, history, summary = train_model(tiny_model_input(), {**params, "resume_from": "last"})

    assert Path(summary["resumed_from"]) == checkpoints[0]
    assert list(history["epoch"]) == list(range(interruptible_training.MAX_EPOCHS))
