"""The Lightning callback that runs a ``TrainingPlan`` (``models.phases``) inside one
``Trainer.fit``: phases entered and left, optimisers and schedules swapped, parts frozen,
loss weights set, and its state carried in checkpoints (see ``models.phases``)."""

from __future__ import annotations

import logging
import math
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from omics_vae.models.base import BaseVAE
from omics_vae.models.phases import (
    Phase,
    PlanChangedError,
    TrainingPlan,
    build_optimizer,
    build_scheduler,
    describe_plan_change,
    regroup_optimizer_state,
)

logger = logging.getLogger(__name__)


class PhaseController(Callback):
    """Runs a ``TrainingPlan`` inside ``Trainer.fit`` (see the module docstring).

    Args:
        plan: The phases.
        steps_per_epoch: Optimiser steps per epoch (schedules stepped per step).
        force_plan_change: Resume a checkpoint even when its plan differs from ``plan``
            (the phase index and epoch are kept; the optimiser state must still fit).
    """

    def __init__(
        self, plan: TrainingPlan, steps_per_epoch: int = 1, force_plan_change: bool = False
    ) -> None:
        self.plan = plan
        self.steps_per_epoch = steps_per_epoch
        self.force_plan_change = force_plan_change
        self._trainer: L.Trainer | None = None
        self.phase_index = 0
        self.phase_start_epoch = 0
        # The reason the current phase ended; the next phase begins with the next epoch.
        self.pending_end: str | None = None
        self.transitions: list[dict[str, Any]] = []
        self.scheduler: Any | None = None
        self._plateau_best = math.inf
        self._plateau_wait = 0
        self._loaded: dict[str, Any] | None = None
        self._loaded_optimizer_states: list[dict[str, Any]] | None = None
        self._settings_epoch: int | None = None

    @property
    def phase(self) -> Phase:
        return self.plan.phases[self.phase_index]

    # ---- checkpoint state --------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "plan": self.plan.to_dict(),
            "phase_index": self.phase_index,
            "phase_name": self.phase.name,
            "phase_start_epoch": self.phase_start_epoch,
            "epoch_in_phase": self._current_epoch() - self.phase_start_epoch,
            "global_step": 0 if self._trainer is None else self._trainer.global_step,
            "pending_end": self.pending_end,
            "transitions": [dict(t) for t in self.transitions],
            "plateau": {"best": self._plateau_best, "wait": self._plateau_wait},
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Applied in on_fit_start, once the plan has been compared.
        self._loaded = state_dict

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        # Lightning loads these into the optimiser after on_fit_start has built it.
        self._loaded_optimizer_states = checkpoint.get("optimizer_states")

    def _current_epoch(self) -> int:
        return 0 if self._trainer is None else self._trainer.current_epoch

    # ---- hooks ---------------------------------------------------------------------------

    def on_fit_start(self, trainer: L.Trainer, pl_module: BaseVAE) -> None:
        self._trainer = trainer
        scheduler_state = None
        if self._loaded is not None:
            scheduler_state = self._restore(self._loaded)
        elif trainer.ckpt_path:
            self._refuse_unless_forced(
                f"the checkpoint {trainer.ckpt_path} was trained without a phase plan"
            )
        self._enter_phase(trainer, pl_module)
        if scheduler_state is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(scheduler_state)
        if self._loaded_optimizer_states:
            names = [group["name"] for group in trainer.optimizers[0].param_groups]
            states = self._loaded_optimizer_states
            states[0] = regroup_optimizer_state(states[0], names)
        logger.info(
            "Phase %d '%s' from epoch %d", self.phase_index, self.phase.name, trainer.current_epoch
        )

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: BaseVAE) -> None:
        if self.pending_end is not None:
            self._finish_phase(trainer.current_epoch - 1, self.pending_end)
            self.phase_index += 1
            self.phase_start_epoch = trainer.current_epoch
            self.pending_end = None
            self._plateau_best, self._plateau_wait = math.inf, 0
            self._enter_phase(trainer, pl_module)
            logger.info(
                "Phase %d '%s' from epoch %d",
                self.phase_index,
                self.phase.name,
                trainer.current_epoch,
            )
        self._apply_epoch_settings(trainer, pl_module)

    def _apply_epoch_settings(self, trainer: L.Trainer, pl_module: BaseVAE) -> None:
        """Frozen parts in eval mode and the loss weights of the current epoch."""
        self._settings_epoch = trainer.current_epoch
        self._set_frozen_parts_to_eval(pl_module)
        epoch_in_phase = trainer.current_epoch - self.phase_start_epoch
        pl_module.set_loss_weight_overrides(
            self.phase.loss_weights(epoch_in_phase, trainer.current_epoch)
        )

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        # A run resumed in the middle of an epoch (stopped by a signal) gets no
        # on_train_epoch_start for that epoch: its settings are applied at its first batch.
        if self._settings_epoch != trainer.current_epoch:
            self._apply_epoch_settings(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.scheduler is not None and self.phase.scheduler.interval == "step":
            self.scheduler.step()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: BaseVAE) -> None:
        pl_module.log("phase", float(self.phase_index), on_step=False, on_epoch=True)
        optimizer = trainer.optimizers[0]
        pl_module.log(
            "lr", max(group["lr"] for group in optimizer.param_groups), on_step=False, on_epoch=True
        )
        self._step_epoch_scheduler(trainer)
        reason = self._end_reason(trainer)
        if reason is None:
            return
        self.pending_end = reason
        if self.phase_index + 1 == len(self.plan.phases):
            trainer.should_stop = True

    def on_fit_end(self, trainer: L.Trainer, pl_module: BaseVAE) -> None:
        last_epoch = trainer.current_epoch - 1
        if not self.transitions or self.transitions[-1]["index"] != self.phase_index:
            self._finish_phase(last_epoch, self.pending_end or "training ended")
        pl_module.set_loss_weight_overrides({})
        self.scheduler = None

    # ---- internals -------------------------------------------------------------------------

    def _restore(self, state: dict[str, Any]) -> dict[str, Any] | None:
        current = self.plan.to_dict()
        if state["plan"] != current:
            self._refuse_unless_forced(
                "the plan changed since the checkpoint was written: "
                + describe_plan_change(state["plan"], current)
            )
        self.phase_index = min(state["phase_index"], len(self.plan.phases) - 1)
        self.phase_start_epoch = state["phase_start_epoch"]
        self.pending_end = state["pending_end"]
        self.transitions = [dict(t) for t in state["transitions"]]
        self._plateau_best = state["plateau"]["best"]
        self._plateau_wait = state["plateau"]["wait"]
        self._loaded = None
        return state["scheduler"]

    def _refuse_unless_forced(self, problem: str) -> None:
        if self.force_plan_change:
            logger.warning("Resuming although %s (force_plan_change is set)", problem)
            return
        raise PlanChangedError(
            f"Cannot resume: {problem}. Restore the plan the run was started with, train "
            "afresh (resume_from: null), or set force_plan_change: true to continue anyway."
        )

    def _enter_phase(self, trainer: L.Trainer, pl_module: BaseVAE) -> None:
        phase = self.phase
        parts = pl_module.module.named_parts()
        for name, part in parts.items():
            part.requires_grad_(name in phase.trainable)
        in_parts = {id(p) for part in parts.values() for p in part.parameters()}
        others = [p for p in pl_module.parameters() if id(p) not in in_parts and p.requires_grad]
        # Replacing the strategy's list and the scheduler drops the last references to the
        # previous phase's optimiser, so its state (Adam's moments) is freed.
        self.scheduler = None
        optimizer = build_optimizer(
            phase.optimizer,
            {name: list(part.parameters()) for name, part in parts.items()},
            phase.trainable,
            others,
        )
        trainer.strategy.optimizers = [optimizer]
        trainer.strategy.lr_scheduler_configs = []
        self.scheduler = build_scheduler(
            phase.scheduler, optimizer, phase.until.cap, self.steps_per_epoch
        )

    def _set_frozen_parts_to_eval(self, pl_module: BaseVAE) -> None:
        for name, part in pl_module.module.named_parts().items():
            if name not in self.phase.trainable:
                part.eval()

    def _step_epoch_scheduler(self, trainer: L.Trainer) -> None:
        if self.scheduler is None or self.phase.scheduler.interval != "epoch":
            return
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            monitor = self.phase.scheduler.args.get("monitor", "val/loss")
            self.scheduler.step(float(trainer.callback_metrics[monitor]))
        else:
            self.scheduler.step()

    def _end_reason(self, trainer: L.Trainer) -> str | None:
        until = self.phase.until
        epochs_done = trainer.current_epoch - self.phase_start_epoch + 1
        if until.kind == "epochs":
            return f"{until.epochs} epochs done" if epochs_done >= until.epochs else None
        value = float(trainer.callback_metrics[until.metric])
        if until.kind == "threshold":
            if until.below is not None and value < until.below:
                return f"{until.metric} {value:.4g} below {until.below:g}"
            if until.above is not None and value > until.above:
                return f"{until.metric} {value:.4g} above {until.above:g}"
        elif self._plateaued(value):
            return (
                f"{until.metric} plateaued: no improvement over {self._plateau_best:.4g} "
                f"for {until.patience} epochs"
            )
        if until.max_epochs is not None and epochs_done >= until.max_epochs:
            return f"max_epochs {until.max_epochs} reached"
        return None

    def _plateaued(self, value: float) -> bool:
        until = self.phase.until
        if value < self._plateau_best - until.min_delta:
            self._plateau_best = value
            self._plateau_wait = 0
            return False
        self._plateau_wait += 1
        return self._plateau_wait >= until.patience

    def _finish_phase(self, end_epoch: int, reason: str) -> None:
        record = {
            "index": self.phase_index,
            "phase": self.phase.name,
            "start_epoch": self.phase_start_epoch,
            "end_epoch": end_epoch,
            "reason": reason,
        }
        self.transitions.append(record)
        logger.info(
            "Phase %d '%s' ended after epoch %d: %s",
            self.phase_index,
            self.phase.name,
            end_epoch,
            reason,
        )
