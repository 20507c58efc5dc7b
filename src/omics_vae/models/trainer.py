"""Fitting a registered model with Lightning: the Trainer, its callbacks, history, resume.

This is the one place that turns plain settings into a ``lightning.Trainer``; the Kedro
training node calls ``fit`` and stays thin.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException

from omics_vae.data.tensors import CountsTensors, InMemoryBatchLoader
from omics_vae.errors import ProjectError
from omics_vae.models.base import BaseVAE
from omics_vae.models.checkpoints import (
    IDENTITY_KEY,
    CheckpointError,
    checkpoint_identity,
    encode_identity,
    identity_differences,
    read_checkpoint,
)
from omics_vae.models.interruption import StopOnSignal, StopRequested
from omics_vae.models.phase_controller import PhaseController
from omics_vae.models.phases import (
    OptimizerSpec,
    TrainingPlan,
    keeps_best_epoch,
    single_phase_plan,
    with_kl_warmup,
)

logger = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"


class ResumeError(ProjectError, FileNotFoundError):
    """``resume_from`` names no checkpoint that this training can continue."""


@dataclass(frozen=True)
class FitSettings:
    """How to train: the Trainer's options plus batching, seeding and resuming.

    Attributes:
        max_epochs: Upper bound on epochs.
        batch_size: Training cells per step.
        eval_batch_size: Cells per validation step.
        seed: Seed of weights, sampling and shuffling (``seed_everything``).
        deterministic: Ask torch for deterministic kernels.
        accelerator, devices, precision, strategy: Passed to ``lightning.Trainer``.
        gradient_clip_val: Gradient-norm clip; ``None`` disables clipping.
        early_stopping_patience: Without ``plan``: epochs without improvement of
            ``monitor`` before the single phase ends; ``None`` trains ``max_epochs``.
        early_stopping_min_delta: Smallest change of ``monitor`` that counts.
        monitor: Metric for early stopping and for choosing the best checkpoint.
        fast_dev_run: Lightning's smoke test (one batch of each loop, nothing saved).
        enable_progress_bar: ``None`` shows it only on an interactive terminal.
        num_threads: CPU threads for torch; ``None`` keeps torch's default (all cores).
            Set it when several trainings share a machine: small models slow down
            many-fold when their threads outnumber the free cores.
        checkpoint_dir: Folder of the Lightning checkpoints of every run (one
            sub-folder each); ``resume_from: last`` continues the newest run with the
            same ``identity``.
        resume_from: ``None`` (train afresh), ``"last"`` or a checkpoint path.
        identity: What this training is (data, covariates, processing, parameters): a
            JSON-able record stored in every checkpoint. A resumed checkpoint must carry
            the same record, so a run never continues another one. ``None`` (plain
            library use) resumes any checkpoint.
        plan: Phases to train in (``models.phases``); ``None``: the one phase of
            ``default_plan`` (from ``max_epochs`` and ``early_stopping_*``). A phase
            that sets no ``kl_weight`` gets the model's KL warm-up
            (``phases.with_kl_warmup``). The phases decide when training ends; a single
            phase ending on a plateau returns the weights of its best epoch, any other
            plan its final weights.
        force_plan_change: Resume even when the checkpoint's plan differs from ``plan``.
        section: Where these settings sit in the parameters (``training``,
            ``paired.training``), for the keys messages tell the user to set.
    """

    max_epochs: int = 100
    batch_size: int = 128
    eval_batch_size: int = 1024
    seed: int = 0
    deterministic: bool = False
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    precision: str | int = "32-true"
    strategy: str = "auto"
    gradient_clip_val: float | None = None
    early_stopping_patience: int | None = 20
    early_stopping_min_delta: float = 0.0
    monitor: str = "val/loss"
    fast_dev_run: bool | int = False
    enable_progress_bar: bool | None = None
    num_threads: int | None = None
    checkpoint_dir: str = "data/06_models/lightning"
    resume_from: str | None = None
    identity: Mapping[str, Any] | None = None
    plan: TrainingPlan | None = None
    force_plan_change: bool = False
    section: str = "training"

    def key(self, name: str) -> str:
        """The dotted parameter key of setting ``name`` (e.g. ``training.resume_from``)."""
        return f"{self.section}.{name}"

    @property
    def local_parameters_file(self) -> str:
        """The user's own parameters file that holds these settings."""
        return f"conf/local/parameters_{self.section.split('.')[0]}.yml"


@dataclass
class FitResult:
    """What ``fit`` returns.

    Attributes:
        model: The model with the weights of its best epoch (by ``monitor``), in eval mode.
        history: One row per epoch: ``epoch`` and every logged metric.
        best_score: Best value of ``monitor``; NaN when nothing was validated.
        epochs: Epochs trained in total (resumed ones included).
        wall_time_s: Seconds spent in this call's ``Trainer.fit``.
        run_dir: Folder of this run's Lightning checkpoints.
        resumed_from: Checkpoint the run continued from, if any.
        phases: One record per phase run (``index``, ``phase``, ``start_epoch``,
            ``end_epoch``, ``reason``); empty without a plan.
    """

    model: BaseVAE
    history: pd.DataFrame
    best_score: float
    epochs: int
    wall_time_s: float
    run_dir: Path
    resumed_from: Path | None
    phases: list[dict[str, Any]] = field(default_factory=list)


class EpochHistoryLogger(Logger):
    """Collects epoch-level metrics in memory, one row per epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[int, dict[str, float]] = {}
        # Set by HistoryState: some loggers' callers pass no epoch.
        self.current_epoch = 0

    @property
    def name(self) -> str:
        return "history"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Hyperparameters are tracked by the pipeline, not here."""

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        epoch = int(metrics.get("epoch", self.current_epoch))
        row = self.rows.setdefault(epoch, {})
        row.update({k: float(v) for k, v in metrics.items() if k != "epoch"})

    def to_frame(self) -> pd.DataFrame:
        frame = pd.DataFrame.from_dict(self.rows, orient="index").sort_index()
        frame.index.name = "epoch"
        return frame.reset_index()


class HistoryState(Callback):
    """Makes a resumed run continue exactly: the epoch history and the RNG state travel
    in checkpoints, and the shuffle follows the trainer's epoch."""

    def __init__(
        self, history: EpochHistoryLogger, identity: Mapping[str, Any] | None = None
    ) -> None:
        self.history = history
        self.identity = identity
        self._trainer: L.Trainer | None = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        rows = {str(k): dict(v) for k, v in self.history.rows.items()}
        if self._trainer is not None and self._trainer.is_last_batch:
            # Checkpoints are written at an epoch's end, before Lightning hands that
            # epoch's train/* (and other epoch-end) metrics to the logger: take them here.
            # (A checkpoint of a stop mid-epoch has none yet: that epoch logs them.)
            row = rows.setdefault(str(self._trainer.current_epoch), {})
            for name, value in self._trainer.callback_metrics.items():
                row.setdefault(name, float(value))
        return {"rows": rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history.rows = {int(k): dict(v) for k, v in state_dict["rows"].items()}

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.history.current_epoch = trainer.current_epoch
        # Lightning hands a loader its saved state only when resuming mid-epoch; after a
        # checkpoint at an epoch's end the shuffle must still follow the trainer's epoch.
        loader = trainer.train_dataloader
        if isinstance(loader, InMemoryBatchLoader) and loader.epoch != trainer.current_epoch:
            loader.set_epoch(trainer.current_epoch)

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = {"torch": torch.get_rng_state()}
        if self.identity is not None:
            checkpoint[IDENTITY_KEY] = encode_identity(self.identity)
        if torch.cuda.is_available():
            checkpoint["rng_states"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if not states:
            return
        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def fit(
    model: BaseVAE,
    train: CountsTensors,
    val: CountsTensors,
    settings: FitSettings,
    callbacks: Sequence[Callback] = (),
) -> FitResult:
    """Train ``model`` on ``train``, validating on ``val`` each epoch.

    Args:
        model: An untrained (or resumed) registered model.
        train: Training cells.
        val: Validation cells.
        settings: Trainer options.
        callbacks: Further Lightning callbacks.

    Returns:
        The trained model (best epoch), its history and run facts.
    """
    if settings.num_threads:
        torch.set_num_threads(settings.num_threads)
    model.gradient_clip_val = settings.gradient_clip_val
    L.seed_everything(settings.seed, workers=True, verbose=False)
    run_dir, resume_path = _run_dir_and_resume_path(settings)
    history = EpochHistoryLogger()
    # One path for every run: a run without phases is a plan of one phase, and every
    # phase that sets no KL weight carries the model's KL warm-up.
    plan = with_kl_warmup(settings.plan or default_plan(model, settings), model)
    steps_per_epoch = math.ceil(train.n_obs / settings.batch_size)
    controller = PhaseController(plan, steps_per_epoch, settings.force_plan_change)
    stop = StopOnSignal(run_dir / LAST_CHECKPOINT)
    trainer = _build_trainer(settings, run_dir, history, controller, (*callbacks, stop))
    train_loader = InMemoryBatchLoader(
        train, settings.batch_size, shuffle=True, seed=settings.seed, device=_device(trainer)
    )
    val_loader = InMemoryBatchLoader(
        val, settings.eval_batch_size, shuffle=False, device=_device(trainer)
    )
    if resume_path is not None:
        logger.info("Resuming training from %s", resume_path)
    started = time.perf_counter()
    with stop.handling_signals():
        try:
            # weights_only passed explicitly: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot
            # override it.
            trainer.fit(model, train_loader, val_loader, ckpt_path=resume_path, weights_only=True)
        except (StopRequested, SIGTERMException):
            stop.request("SIGTERM")  # Lightning's own stop, at an epoch's end
            raise _interrupted(stop, run_dir, settings) from None
    if stop.signal_name is not None:  # asked during the last epoch: it finished first
        raise _interrupted(stop, run_dir, settings)
    wall_time = time.perf_counter() - started

    if keeps_best_epoch(plan):
        best_score = _best_score(trainer, history, settings.monitor)
        best_model = _load_best_weights(model, trainer)
    else:
        best_score = _best_score_in_phase(history, settings.monitor, controller.phase_index)
        best_model = model
    return FitResult(
        model=best_model.eval(),
        history=history.to_frame(),
        best_score=best_score,
        epochs=trainer.current_epoch,
        wall_time_s=wall_time,
        run_dir=run_dir,
        resumed_from=Path(resume_path) if resume_path else None,
        phases=[dict(t) for t in controller.transitions],
    )


def _interrupted(stop: StopOnSignal, run_dir: Path, settings: FitSettings) -> Exception:
    return stop.interrupted(
        run_dir / LAST_CHECKPOINT, settings.key("resume_from"), settings.local_parameters_file
    )


def default_plan(model: BaseVAE, settings: FitSettings) -> TrainingPlan:
    """The single phase of a run without a plan: every part, the model's own optimiser
    settings and KL warm-up, until ``monitor`` stops improving (``early_stopping_*``) or
    ``max_epochs``."""
    hparams = model.hparams
    optimizer = OptimizerSpec(
        str(hparams.optimizer).lower(),
        {"lr": hparams.learning_rate, "weight_decay": hparams.weight_decay},
    )
    return single_phase_plan(
        model,
        optimizer,
        settings.max_epochs,
        patience=settings.early_stopping_patience,
        min_delta=settings.early_stopping_min_delta,
        monitor=settings.monitor,
    )


def _build_trainer(
    settings: FitSettings,
    run_dir: Path,
    history: EpochHistoryLogger,
    controller: PhaseController,
    extra_callbacks: Sequence[Callback] = (),
) -> L.Trainer:
    # The controller runs the phases: optimisers, schedules, freezing, loss weights and
    # when each phase (early stopping included) ends; it logs `lr` and `phase` itself.
    callbacks: list[Callback] = [HistoryState(history, settings.identity), controller]
    callbacks.extend(extra_callbacks)
    if not settings.fast_dev_run:
        best = keeps_best_epoch(controller.plan)
        callbacks.append(
            ModelCheckpoint(
                dirpath=run_dir,
                # Without a single yardstick across phases (see fit), keep the newest epoch.
                filename="best-{epoch:03d}" if best else "{epoch:03d}",
                monitor=settings.monitor if best else None,
                mode="min",
                save_last=True,
                save_top_k=1,
            )
        )
    return L.Trainer(
        max_epochs=controller.plan.max_epochs or -1,
        accelerator=settings.accelerator,
        devices=settings.devices,
        precision=settings.precision,
        strategy=settings.strategy,
        deterministic=settings.deterministic,
        fast_dev_run=settings.fast_dev_run,
        enable_progress_bar=_show_progress_bar(settings.enable_progress_bar),
        enable_model_summary=False,
        logger=history,
        callbacks=callbacks,
        default_root_dir=run_dir,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
    )


def _show_progress_bar(requested: bool | None) -> bool:
    if requested is not None:
        return requested
    return sys.stderr.isatty() and not os.environ.get("CI")


def _device(trainer: L.Trainer) -> torch.device:
    return trainer.strategy.root_device


def _run_dir_and_resume_path(settings: FitSettings) -> tuple[Path, str | None]:
    root = Path(settings.checkpoint_dir)
    resume_from = settings.key("resume_from")
    train_afresh = f"set {resume_from}: null in {settings.local_parameters_file} to train afresh"
    if settings.resume_from is None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H.%M.%S.%fZ")
        return root / stamp, None
    if settings.resume_from == "last":
        newest = _newest_resumable_checkpoint(root, settings)
        return newest.parent, str(newest)
    path = Path(settings.resume_from)
    if not path.is_file():
        raise ResumeError(
            f"{resume_from}: checkpoint '{path}' does not exist. Set {resume_from}: last to "
            f"continue the newest matching run under {root}, or {train_afresh}."
        )
    try:
        checkpoint = read_checkpoint(path)
    except CheckpointError as error:
        raise ResumeError(
            f"{resume_from}: checkpoint '{path}' cannot be resumed: {error.problem}. Delete "
            f"the file (rm '{path}') and set {resume_from}: last to continue the newest "
            f"other run, or {train_afresh}."
        ) from None
    differences = _differences(checkpoint, settings.identity)
    if differences:
        raise ResumeError(
            f"{resume_from}: checkpoint '{path}' belongs to another training, so "
            f"continuing it would not give the model this run names: "
            f"{'; '.join(differences)}. Set {resume_from}: null in "
            f"{settings.local_parameters_file} to train afresh."
        )
    return path.parent, str(path)


def _newest_resumable_checkpoint(root: Path, settings: FitSettings) -> Path:
    resume_from = settings.key("resume_from")
    candidates = sorted(root.glob(f"*/{LAST_CHECKPOINT}"), reverse=True)
    if not candidates:
        raise ResumeError(
            f"{resume_from}: last, but no run under '{root}' has a {LAST_CHECKPOINT}. "
            f"Set {resume_from}: null in {settings.local_parameters_file} to train afresh."
        )
    refused, unreadable = [], []
    for candidate in candidates:
        try:
            differences = _differences(read_checkpoint(candidate), settings.identity)
        except CheckpointError as error:
            logger.warning("Not resuming %s: %s", candidate, error.problem)
            unreadable.append(f"  {candidate}: {error.problem}")
            continue
        if not differences:
            return candidate
        refused.append(f"  {candidate.parent.name}: {'; '.join(differences)}")
    reasons = []
    if unreadable:
        reasons.append(
            "these checkpoints cannot be read (delete them: rm the files):\n"
            + "\n".join(unreadable)
        )
    if refused:
        reasons.append(
            "these runs trained on other data or with other parameters or seed:\n"
            + "\n".join(refused)
        )
    raise ResumeError(
        f"{resume_from}: last, but no run under '{root}' can be continued; "
        + "\n".join(reasons)
        + "\nRun again with the parameters of the run to continue, or set "
        f"{resume_from}: null in {settings.local_parameters_file} to train afresh."
    )


def _differences(checkpoint: Mapping[str, Any], identity: Mapping[str, Any] | None) -> list[str]:
    if identity is None:
        return []
    return identity_differences(checkpoint_identity(checkpoint), identity)


def _best_score(trainer: L.Trainer, history: EpochHistoryLogger, monitor: str) -> float:
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and checkpoint.best_model_score is not None:
        return float(checkpoint.best_model_score)
    values = [row[monitor] for row in history.rows.values() if monitor in row]
    return float(min(values)) if values else float("nan")


def _best_score_in_phase(history: EpochHistoryLogger, monitor: str, phase_index: int) -> float:
    values = [
        row[monitor]
        for row in history.rows.values()
        if monitor in row and row.get("phase") == phase_index
    ]
    return float(min(values)) if values else float("nan")


def _load_best_weights(model: BaseVAE, trainer: L.Trainer) -> BaseVAE:
    checkpoint = trainer.checkpoint_callback
    best_path = getattr(checkpoint, "best_model_path", "") if checkpoint else ""
    if not best_path:
        return model
    state = torch.load(best_path, map_location=model.device, weights_only=True)["state_dict"]
    model.load_state_dict(state)
    return model
