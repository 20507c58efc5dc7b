"""Stopping a training when asked: SIGTERM (``kill <pid>``) or Ctrl-C (SIGINT).

Left to Lightning, SIGTERM stops the loops between batches with a ``SystemExit`` that
carries no status, so the process exits 0 and the run looks finished, and no checkpoint
is written for the batches since the last epoch; Ctrl-C raises ``KeyboardInterrupt``
wherever the code is (an optimiser step half done). ``StopOnSignal`` owns both signals
while ``Trainer.fit`` runs: the first one asks it to stop at the end of the running
training batch, where it writes a checkpoint (``last.ckpt``, replaced atomically) that
``resume_from: last`` continues exactly, and ``fit`` raises ``TrainingInterrupted``. A
second Ctrl-C stops at once. A signal that arrives on an epoch's last batch lets the
epoch finish, validation and its checkpoint included, and stops after the next batch.

The checkpoint of a stop mid-epoch also carries the model's running sums of the epoch's
training metrics (``BaseVAE``'s ``_train_means``), restored on resume, so the resumed
epoch's ``train/*`` means cover all its batches, as in an uninterrupted run.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities.exceptions import SIGTERMException

logger = logging.getLogger(__name__)

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Where a mid-epoch checkpoint keeps the training metrics' running sums of its epoch.
EPOCH_MEANS_KEY = "omics_vae_epoch_train_means"
_NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C (SIGINT)"}


class TrainingInterrupted(RuntimeError):
    """Training was stopped by SIGTERM or Ctrl-C, after writing a checkpoint to resume.

    Attributes:
        signal_name: The signal that stopped it.
        checkpoint: The checkpoint ``resume_from: last`` continues from, if one exists.
        mlflow_status: How a tracking run that this training belongs to ended.
    """

    mlflow_status = "KILLED"

    def __init__(self, message: str, *, signal_name: str = "", checkpoint: Path | None = None):
        super().__init__(message)
        self.signal_name = signal_name
        self.checkpoint = checkpoint


class StopRequested(Exception):
    """Raised inside ``Trainer.fit`` to leave it once the checkpoint is written."""


class StopOnSignal(Callback):
    """Stops a fit at the end of the training batch during which a signal arrived.

    Args:
        checkpoint_path: Where the resumable checkpoint goes (the run's ``last.ckpt``).
    """

    def __init__(self, checkpoint_path: Path) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.signal_name: str | None = None
        self.stopped_at: str | None = None
        self._epoch_means: dict[str, Any] | None = None

    def request(self, signal_name: str) -> None:
        """Asks the fit to stop after the running batch (the first request counts)."""
        if self.signal_name is None:
            self.signal_name = signal_name

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.signal_name is None and trainer.received_sigterm:
            self.request(_NAMES[signal.SIGTERM])
        # On an epoch's last batch, validation and the epoch's checkpoint come next:
        # stopping before them would lose that epoch's validation on resume.
        if self.signal_name is None or trainer.is_last_batch:
            return
        save_checkpoint_atomically(trainer, self.checkpoint_path)
        self.stopped_at = (
            f"epoch {trainer.current_epoch}, batch {batch_idx + 1} of "
            f"{trainer.num_training_batches}"
        )
        raise StopRequested()

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        # Lightning's own stop for a SIGTERM that arrived after this callback's batch-end
        # hook: raised once the batch completed. Mid-epoch, checkpoint that point too
        # (at an epoch's end, or during validation, the epoch's checkpoint is the one).
        if (
            isinstance(exception, SIGTERMException)
            and self.stopped_at is None
            and trainer.training
            and not trainer.is_last_batch
        ):
            self.request(_NAMES[signal.SIGTERM])
            save_checkpoint_atomically(trainer, self.checkpoint_path)
            done = trainer.fit_loop.epoch_loop.batch_progress.current.completed
            self.stopped_at = (
                f"epoch {trainer.current_epoch}, batch {done} of {trainer.num_training_batches}"
            )

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict) -> None:
        means = getattr(pl_module, "_train_means", None)
        if trainer.is_last_batch or means is None or means.sums is None:
            return
        checkpoint[EPOCH_MEANS_KEY] = {
            "sums": means.sums.detach().cpu(),
            "count": int(means.count),
            "names": list(means.names),
        }

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict) -> None:
        self._epoch_means = checkpoint.get(EPOCH_MEANS_KEY)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx) -> None:
        # After the model's on_train_epoch_start, which empties its sums.
        if self._epoch_means is None:
            return
        means = pl_module._train_means
        means.sums = self._epoch_means["sums"].to(pl_module.device)
        means.count = self._epoch_means["count"]
        means.names = tuple(self._epoch_means["names"])
        self._epoch_means = None

    @contextmanager
    def handling_signals(self) -> Iterator[StopOnSignal]:
        """Installs the SIGTERM and SIGINT handlers for the block (main thread only).

        Lightning's own SIGTERM handler, installed inside ``Trainer.fit``, calls the
        handler it finds, so both see SIGTERM.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}

        def handle(signum: int, frame: FrameType | None) -> None:
            if signum == signal.SIGINT and self.signal_name is not None:
                raise KeyboardInterrupt  # a second Ctrl-C: stop at once
            first = self.signal_name is None
            self.request(_NAMES[signal.Signals(signum)])
            if first:
                logger.warning(
                    "%s received: training stops after the running batch and writes a "
                    "checkpoint to resume from%s.",
                    _NAMES[signal.Signals(signum)],
                    " (Ctrl-C again stops at once)" if signum == signal.SIGINT else "",
                )

        for signum in _SIGNALS:
            signal.signal(signum, handle)
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler if handler is not None else signal.SIG_DFL)

    def interrupted(self, checkpoint: Path | None, resume_key: str, parameters_file: str) -> Any:
        """The ``TrainingInterrupted`` to raise, naming the checkpoint and how to resume."""
        where = f" at {self.stopped_at}" if self.stopped_at else ""
        if checkpoint is not None and checkpoint.is_file():
            then = (
                f"A checkpoint to continue from is at '{checkpoint}': run again with "
                f"{resume_key}: last (--params {resume_key}=last, or in {parameters_file})."
            )
        else:
            checkpoint = None
            then = "No checkpoint was written before it stopped; run again to train afresh."
        return TrainingInterrupted(
            f"Training stopped by {self.signal_name}{where}. {then}",
            signal_name=self.signal_name or "",
            checkpoint=checkpoint,
        )


def save_checkpoint_atomically(trainer: L.Trainer, path: Path) -> None:
    """``trainer.save_checkpoint(path)`` through a partial file renamed into place, so a
    process killed while saving never leaves a truncated checkpoint under ``path``."""
    partial = path.with_name(f".{path.name}.partial-{os.getpid()}")
    trainer.save_checkpoint(partial)
    os.replace(partial, path)
