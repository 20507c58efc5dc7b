"""Multi-phase training: a plan of phases and the Lightning callback that runs it.

A ``TrainingPlan`` is an ordered tuple of ``Phase``s. Each phase trains some of the
model's named parts (``VAEModule.named_parts``) with an optimiser and learning-rate
schedule of its own, may override loss weights (``BaseVAE.set_loss_weight_overrides``),
fixed or ramped linearly, and ends after a number of epochs, when a validation metric
crosses a threshold, or when it stops improving.

The KL warm-up is a loss-weight ramp of the plan too (``kl_warmup``): every phase that
sets no ``kl_weight`` of its own carries the model's warm-up, counted in the run's epochs
(so a later phase without ``kl_weight`` trains at ``beta_max`` once the warm-up is over).
A run without phases is one such phase (``single_phase_plan``).

``PhaseController`` (``models.phase_controller``) runs a plan inside one ``Trainer.fit``:

- at fit start it enters the current phase (the first, or the one a checkpoint was in):
  frozen parts get ``requires_grad=False`` and eval mode, the phase's optimiser replaces
  the strategy's, so Lightning's own checkpoint restore loads the saved optimiser state
  into the right optimiser;
- it owns the scheduler (stepped per epoch or per step, counted within the phase) and
  saves it in its callback state, so resuming continues the schedule exactly;
- at each epoch's end it logs ``phase`` and ``lr``, steps the scheduler and decides
  whether the phase is over; the next phase starts with the next epoch, so a checkpoint
  always holds the optimiser of the phase it names;
- its state (plan, phase index and name, start epoch, epoch within the phase, global
  step, transitions, plateau tracker, scheduler) travels in checkpoints; resuming with a
  different plan is refused unless ``force_plan_change``.

This module imports torch only where it builds or probes optimisers, so the parameter
schemas (``omics_vae/schemas/training.py``), which build and print plans, read it without
torch.
"""

from __future__ import annotations

import logging
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from omics_vae.errors import ProjectError
from omics_vae.models.hyperparameters import ADAM_EPS

if TYPE_CHECKING:
    import torch
    from torch import nn

    from omics_vae.models.base import BaseVAE

logger = logging.getLogger(__name__)

# Each optimiser's class in torch.optim (looked up when one is built).
OPTIMIZERS: dict[str, str] = {
    "adam": "Adam",
    "adamw": "AdamW",
    "sgd": "SGD",
    "rmsprop": "RMSprop",
    "adagrad": "Adagrad",
}
SCHEDULERS = (
    "constant",
    "linear_warmup",
    "cosine",
    "step",
    "reduce_on_plateau",
    "one_cycle",
)
_ADAM_LIKE = ("adam", "adamw")
_FUSED_DEVICES = ("cpu", "cuda")


class PhasePlanError(ProjectError, ValueError):
    """A training plan that cannot run on the model; the message names phase and field."""


class PlanChangedError(ProjectError, RuntimeError):
    """Resuming a checkpoint whose plan differs from the plan given now."""


@dataclass(frozen=True)
class Ramp:
    """A loss weight going linearly from ``start`` at a phase's first epoch to ``end``.

    Attributes:
        start: Value at the first epoch (of the phase, or of the run).
        end: Value reached at the last epoch of the ramp and kept after it.
        epochs: Length of the ramp; ``None``: the whole phase (its epochs or cap).
        clock: Whose epochs it counts: the phase's (0 at its first epoch) or the run's
            (the KL warm-up, which goes on across phases that set no KL weight).
    """

    start: float
    end: float
    epochs: int | None = None
    clock: Literal["phase", "run"] = "phase"

    def value(self, epoch: int, phase_epochs: int | None) -> float:
        """The weight at ``epoch`` (counted by ``clock``) of a phase of ``phase_epochs``."""
        length = self.epochs or phase_epochs or 1
        if length <= 1:
            return self.end
        fraction = min(1.0, epoch / (length - 1))
        return self.start + (self.end - self.start) * fraction

    def describe(self) -> str:
        if self.start == self.end:
            return f"{self.end:g}"
        if self.clock == "run":
            return f"{self.start:g}→{self.end:g} over run epochs 0-{(self.epochs or 1) - 1}"
        over = f" over {self.epochs} ep" if self.epochs else ""
        return f"{self.start:g}→{self.end:g}{over}"


@dataclass(frozen=True)
class OptimizerSpec:
    """A torch optimiser by name, its keyword arguments, and per-part overrides of them.

    Attributes:
        name: A key of ``OPTIMIZERS``.
        args: Keyword arguments of the optimiser (``lr``, ``weight_decay``, ...).
        parts: ``{part: {argument: value}}``, e.g. a lower ``lr`` for the encoder.
    """

    name: str = "adam"
    args: Mapping[str, Any] = field(default_factory=lambda: {"lr": 1e-3})
    parts: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def describe(self) -> str:
        args = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.args.items()
        )
        text = f"{self.name}({args})"
        for part, overrides in self.parts.items():
            text += f" {part}:" + ",".join(f"{k}={v:g}" for k, v in overrides.items())
        return text


@dataclass(frozen=True)
class SchedulerSpec:
    """A learning-rate schedule counted from the start of its phase.

    Attributes:
        name: One of ``SCHEDULERS``.
        args: Its arguments: ``linear_warmup``: ``warmup`` (intervals), ``start_factor``;
            ``cosine``: ``T_max`` (default: the phase's length), ``eta_min``; ``step``:
            ``step_size``, ``gamma``; ``reduce_on_plateau``: ``monitor`` (a ``val/``
            metric), ``factor``, ``patience``, ``threshold``, ``min_lr``; ``one_cycle``:
            ``max_lr`` (default: the optimiser's ``lr``), ``total_steps`` (default: the
            phase's length), ``pct_start``.
        interval: Step it every ``epoch`` or every optimiser ``step``.
    """

    name: str = "constant"
    args: Mapping[str, Any] = field(default_factory=dict)
    interval: Literal["epoch", "step"] = "epoch"

    def describe(self) -> str:
        if self.name == "constant":
            return "constant"
        args = ",".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.args.items()
        )
        return f"{self.name}({args})/{self.interval}"


@dataclass(frozen=True)
class Until:
    """When a phase ends: after ``epochs``; when ``metric`` goes ``below``/``above`` a
    value; or when ``metric`` has not improved by ``min_delta`` for ``patience`` epochs.
    ``max_epochs`` caps the metric criteria (``None``: no cap)."""

    epochs: int | None = None
    metric: str | None = None
    below: float | None = None
    above: float | None = None
    patience: int | None = None
    min_delta: float = 0.0
    max_epochs: int | None = None

    @property
    def kind(self) -> Literal["epochs", "threshold", "plateau"]:
        if self.epochs is not None:
            return "epochs"
        return "plateau" if self.patience is not None else "threshold"

    @property
    def cap(self) -> int | None:
        """Most epochs the phase can last."""
        return self.epochs if self.kind == "epochs" else self.max_epochs

    def describe(self) -> str:
        cap = f" (max {self.max_epochs})" if self.max_epochs else ""
        if self.kind == "epochs":
            return f"{self.epochs} epochs"
        if self.kind == "plateau":
            delta = f", Δ>{self.min_delta:g}" if self.min_delta else ""
            return f"{self.metric} plateau: {self.patience} ep{delta}{cap}"
        side, value = ("<", self.below) if self.below is not None else (">", self.above)
        return f"{self.metric} {side} {value:g}{cap}"


@dataclass(frozen=True)
class Phase:
    """One phase of a plan.

    Attributes:
        name: Shown in logs, the history and the loss-curve figure.
        trainable: Named parts trained in this phase; the others are frozen.
        optimizer: Its optimiser.
        scheduler: Its learning-rate schedule.
        loss: Loss-weight overrides (``kl_weight``, ``tc_weight``, a module's own weights).
        until: When it ends.
    """

    name: str
    trainable: tuple[str, ...]
    optimizer: OptimizerSpec
    until: Until
    scheduler: SchedulerSpec = SchedulerSpec()
    loss: Mapping[str, Ramp] = field(default_factory=dict)

    def loss_weights(self, epoch_in_phase: int, run_epoch: int) -> dict[str, float]:
        """The loss weights at an epoch, given within the phase and within the run."""
        return {
            name: ramp.value(run_epoch if ramp.clock == "run" else epoch_in_phase, self.until.cap)
            for name, ramp in self.loss.items()
        }


@dataclass(frozen=True)
class TrainingPlan:
    """An ordered tuple of phases."""

    phases: tuple[Phase, ...]

    @property
    def max_epochs(self) -> int | None:
        """Epochs of the whole plan at most; ``None`` when a phase has no cap."""
        caps = [phase.until.cap for phase in self.phases]
        return None if any(cap is None for cap in caps) else sum(caps)

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able form: stored in checkpoints and compared on resume."""
        return {"phases": [_plain(asdict(phase)) for phase in self.phases]}

    def names(self) -> list[str]:
        return [phase.name for phase in self.phases]


def kl_warmup(model: BaseVAE) -> Ramp:
    """The model's KL warm-up as a loss-weight ramp counted in the run's epochs: beta
    (``kl_weight``) from 0 at the first epoch to ``beta_max`` at epoch
    ``kl_warmup_epochs``, linearly, then ``beta_max``; ``beta_max`` throughout when
    ``kl_warmup_epochs`` is 0."""
    beta_max = float(model.hparams.beta_max)
    epochs = int(model.hparams.kl_warmup_epochs)
    if epochs <= 0:
        return Ramp(beta_max, beta_max)
    # A ramp reaches `end` at its last epoch: epoch `kl_warmup_epochs` is the ramp's
    # (kl_warmup_epochs + 1)-th.
    return Ramp(0.0, beta_max, epochs + 1, clock="run")


def with_kl_warmup(plan: TrainingPlan, model: BaseVAE) -> TrainingPlan:
    """``plan`` with the model's KL warm-up (``kl_warmup``) in every phase that sets no
    ``kl_weight`` of its own; a plan that has it everywhere comes back unchanged."""
    warmup = kl_warmup(model)
    return TrainingPlan(
        tuple(
            phase
            if "kl_weight" in phase.loss
            else replace(phase, loss={"kl_weight": warmup, **phase.loss})
            for phase in plan.phases
        )
    )


def single_phase_plan(
    model: BaseVAE,
    optimizer: OptimizerSpec,
    max_epochs: int | None,
    *,
    patience: int | None,
    min_delta: float = 0.0,
    monitor: str = "val/loss",
) -> TrainingPlan:
    """The plan of a run without phases: one phase training every part of ``model``,
    until ``monitor`` stops improving for ``patience`` epochs (or for ``max_epochs`` when
    ``patience`` is ``None``), with the model's KL warm-up (``kl_warmup``)."""
    until = (
        Until(epochs=max_epochs)
        if patience is None
        else Until(
            metric=monitor, patience=max(patience, 1), min_delta=min_delta, max_epochs=max_epochs
        )
    )
    parts = tuple(model.module.named_parts())
    return with_kl_warmup(TrainingPlan((Phase("train", parts, optimizer, until),)), model)


def keeps_best_epoch(plan: TrainingPlan) -> bool:
    """Whether training returns the weights of the best epoch rather than the last: for a
    single phase that ends when its metric stops improving (early stopping). Across
    phases the loss changes (e.g. beta = 0 while warming up), so one phase's metric is no
    yardstick for another's, and a plan of several returns its final weights."""
    return len(plan.phases) == 1 and plan.phases[0].until.kind == "plateau"


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# ---- checks ----------------------------------------------------------------------------


def check_plan(plan: TrainingPlan, model: BaseVAE) -> None:
    """Refuse a plan that cannot run on ``model``, naming the phase and the field.

    Checks part names, that each phase has trainable parameters, optimiser and scheduler
    names and arguments (by building them on the model's parameters), loss-weight names,
    and that watched metrics are validation metrics the model logs.

    Raises:
        PhasePlanError: The first problem found.
    """
    if not plan.phases:
        raise PhasePlanError("phases: the list is empty; leave it out to train in one phase")
    names = plan.names()
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PhasePlanError(f"phases: names must be unique, repeated: {duplicates}")
    parts = model.module.named_parts()
    metrics = logged_validation_metrics(model)
    for index, phase in enumerate(plan.phases):
        where = f"phases[{index}] ({phase.name})"
        _check_parts(where, phase, parts)
        _check_optimizer(where, phase, parts)
        _check_scheduler(where, phase, parts, metrics)
        _check_loss(where, phase, model)
        _check_until(where, phase, metrics)


def logged_validation_metrics(model: BaseVAE) -> list[str]:
    """The ``val/`` metrics the model logs every epoch (what transitions may watch)."""
    return [f"val/{term}" for term in model.module.logged_terms]


def _check_parts(where: str, phase: Phase, parts: Mapping[str, nn.Module]) -> None:
    unknown = sorted(set(phase.trainable) - set(parts))
    if unknown:
        raise PhasePlanError(
            f"{where}.trainable: unknown part(s) {unknown}; parts of this model: {sorted(parts)}"
        )
    n_parameters = sum(p.numel() for name in phase.trainable for p in parts[name].parameters())
    if n_parameters == 0:
        raise PhasePlanError(
            f"{where}.trainable: the parts {list(phase.trainable)} have no parameters to "
            f"train; name at least one of {sorted(parts)} that has some"
        )
    unknown = sorted(set(phase.optimizer.parts) - set(phase.trainable))
    if unknown:
        raise PhasePlanError(
            f"{where}.optimizer.parts: {unknown} are not trainable in this phase "
            f"(trainable: {list(phase.trainable)})"
        )


def _check_optimizer(where: str, phase: Phase, parts: Mapping[str, nn.Module]) -> None:
    if phase.optimizer.name not in OPTIMIZERS:
        raise PhasePlanError(
            f"{where}.optimizer.name: unknown optimizer {phase.optimizer.name!r}; "
            f"choose one of {sorted(OPTIMIZERS)}"
        )
    try:
        build_optimizer(phase.optimizer, _probe_parts(parts), phase.trainable)
    except (TypeError, ValueError) as error:
        raise PhasePlanError(f"{where}.optimizer: {error}") from None


def _check_scheduler(
    where: str, phase: Phase, parts: Mapping[str, nn.Module], metrics: list[str]
) -> None:
    spec = phase.scheduler
    if spec.name not in SCHEDULERS:
        raise PhasePlanError(
            f"{where}.scheduler.name: unknown scheduler {spec.name!r}; choose one of "
            f"{list(SCHEDULERS)}"
        )
    if spec.name == "reduce_on_plateau":
        if spec.interval != "epoch":
            raise PhasePlanError(f"{where}.scheduler.interval: reduce_on_plateau steps per epoch")
        monitor = spec.args.get("monitor", "val/loss")
        if monitor not in metrics:
            raise PhasePlanError(
                f"{where}.scheduler.args.monitor: {monitor!r} is never logged; choose one "
                f"of {metrics}"
            )
    optimizer = build_optimizer(phase.optimizer, _probe_parts(parts), phase.trainable)
    try:
        # One step per epoch is enough to check the arguments.
        build_scheduler(spec, optimizer, phase.until.cap, steps_per_epoch=1)
    except (TypeError, ValueError, KeyError) as error:
        raise PhasePlanError(f"{where}.scheduler: {error}") from None


def _check_loss(where: str, phase: Phase, model: BaseVAE) -> None:
    valid = model.loss_weight_names()
    unknown = sorted(set(phase.loss) - set(valid))
    if unknown:
        raise PhasePlanError(
            f"{where}.loss: unknown loss weight(s) {unknown}; {type(model).__name__} has "
            f"{list(valid)}"
        )
    for name, ramp in phase.loss.items():
        if ramp.start != ramp.end and ramp.epochs is None and phase.until.cap is None:
            raise PhasePlanError(
                f"{where}.loss.{name}: a ramp across a phase without max_epochs needs its "
                "own `epochs`"
            )


def _check_until(where: str, phase: Phase, metrics: list[str]) -> None:
    until = phase.until
    if until.kind != "epochs" and until.metric not in metrics:
        raise PhasePlanError(
            f"{where}.until.metric: {until.metric!r} is never logged; phases move on by a "
            f"validation metric, one of {metrics}"
        )


def _probe_parts(parts: Mapping[str, nn.Module]) -> dict[str, list[nn.Parameter]]:
    """Parameters shaped like the parts' but detached, so checks touch no real weights."""
    import torch  # noqa: PLC0415  (see the module docstring)
    from torch import nn  # noqa: PLC0415

    return {
        name: [nn.Parameter(torch.zeros(1)) for _ in part.parameters()]
        for name, part in parts.items()
    }


# ---- building optimisers and schedulers -------------------------------------------------


def build_optimizer(
    spec: OptimizerSpec,
    part_parameters: Mapping[str, list[nn.Parameter]],
    trainable: tuple[str, ...],
    other_parameters: list[nn.Parameter] | None = None,
) -> torch.optim.Optimizer:
    """The phase's optimiser: one parameter group per distinct setting of the trainable
    parts, named after its parts (``encoder+decoder+dispersion``).

    Parts without overrides share one group with the parameters outside every part: each
    group costs the optimiser a separate pass per step (with three groups Adam took
    ~0.25 ms more per step on a CPU core, 2-3 % of a 128-cell step), and the update of a
    parameter does not depend on its group.

    Args:
        spec: The optimiser's name and arguments.
        part_parameters: Parameters of each named part.
        trainable: Parts to train.
        other_parameters: Parameters outside every named part (trained in every phase).

    Returns:
        A torch optimiser.
    """
    groups: dict[tuple[tuple[str, Any], ...], dict[str, Any]] = {}

    def add(name: str, parameters: list[nn.Parameter], overrides: Mapping[str, Any]) -> None:
        group = groups.setdefault(
            tuple(sorted(overrides.items())), {"params": [], "names": [], **overrides}
        )
        group["params"].extend(parameters)
        group["names"].append(name)

    for name in trainable:
        if part_parameters[name]:
            add(name, list(part_parameters[name]), spec.parts.get(name, {}))
    if other_parameters:
        add("other", other_parameters, {})
    param_groups = [
        {**{k: v for k, v in group.items() if k != "names"}, "name": "+".join(group["names"])}
        for group in groups.values()
    ]
    args = dict(spec.args)
    if spec.name in _ADAM_LIKE:
        # The plain path's epsilon (scvi-tools'), and one fused kernel per step.
        args.setdefault("eps", ADAM_EPS)
        devices = {p.device.type for group in param_groups for p in group["params"]}
        if "fused" not in args and devices <= set(_FUSED_DEVICES):
            args["fused"] = True
    import torch  # noqa: PLC0415  (see the module docstring)

    return getattr(torch.optim, OPTIMIZERS[spec.name])(param_groups, **args)


def regroup_optimizer_state(
    state: Mapping[str, Any], group_names: Sequence[str]
) -> Mapping[str, Any]:
    """An optimiser state saved with other parameter groups, regrouped into groups of
    these names (``build_optimizer``'s, parts joined by ``+``).

    Checkpoints written before parts without their own settings shared one group hold a
    group per part; their per-parameter state (Adam's moments) carries over unchanged, so
    such a run resumes where it stopped. A state whose groups cannot be regrouped so is
    returned as it is, for the optimiser to refuse.
    """
    saved = state["param_groups"]
    if [group.get("name") for group in saved] == list(group_names):
        return state
    by_part = {part: group for group in saved for part in str(group.get("name")).split("+")}
    parts_of = [name.split("+") for name in group_names]
    if any(part not in by_part for parts in parts_of for part in parts):
        return state
    groups = [
        {
            **by_part[parts[0]],
            "params": [index for part in parts for index in by_part[part]["params"]],
            "name": name,
        }
        for name, parts in zip(group_names, parts_of, strict=True)
    ]
    return {**state, "param_groups": groups}


def build_scheduler(
    spec: SchedulerSpec,
    optimizer: torch.optim.Optimizer,
    phase_epochs: int | None,
    steps_per_epoch: int,
) -> Any | None:
    """The phase's learning-rate scheduler; ``None`` for ``constant``.

    Args:
        spec: The schedule's name and arguments.
        optimizer: The phase's optimiser.
        phase_epochs: The phase's length (epochs or cap), for schedules spanning it.
        steps_per_epoch: Optimiser steps per epoch (for ``interval: step``).

    Raises:
        ValueError: A schedule that spans the phase in a phase without a length.
    """
    import torch  # noqa: PLC0415  (see the module docstring)

    schedulers = torch.optim.lr_scheduler
    args = dict(spec.args)
    per_epoch = spec.interval == "epoch"
    phase_length = (
        None if phase_epochs is None else phase_epochs * (1 if per_epoch else steps_per_epoch)
    )
    if spec.name == "constant":
        return None
    if spec.name == "linear_warmup":
        if "warmup" not in args:
            raise ValueError("linear_warmup needs `warmup`: its length in epochs (or steps)")
        return schedulers.LinearLR(
            optimizer,
            start_factor=args.pop("start_factor", 0.1),
            end_factor=1.0,
            total_iters=args.pop("warmup"),
            **args,
        )
    if spec.name == "cosine":
        return schedulers.CosineAnnealingLR(
            optimizer, T_max=args.pop("T_max", None) or _need(phase_length, "T_max"), **args
        )
    if spec.name == "step":
        return schedulers.StepLR(optimizer, **args)
    if spec.name == "reduce_on_plateau":
        args.pop("monitor", None)
        return schedulers.ReduceLROnPlateau(optimizer, mode="min", **args)
    max_lr = args.pop("max_lr", None) or [group["lr"] for group in optimizer.param_groups]
    return schedulers.OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=args.pop("total_steps", None) or _need(phase_length, "total_steps"),
        **args,
    )


def _need(value: int | None, name: str) -> int:
    if value is None:
        raise ValueError(f"give `{name}`: the phase has no fixed length (no epochs or max_epochs)")
    return value


# ---- printing ---------------------------------------------------------------------------


PLAN_WIDTH = 100


def format_plan(plan: TrainingPlan, model_defaults: Mapping[str, str] | None = None) -> str:
    """The plan as text no wider than ``PLAN_WIDTH``: per phase a title line (index, name,
    when it ends), then what it trains, its optimiser and schedule, and its loss weights.

    Args:
        plan: The plan.
        model_defaults: What the loss line says for weights the phase does not override.
    """
    default_loss = (
        ", ".join(f"{k}: {v}" for k, v in (model_defaults or {}).items()) or "model's own"
    )
    lines = []
    for index, phase in enumerate(plan.phases):
        fields = {
            "trainable": ", ".join(phase.trainable),
            "optimizer": f"{phase.optimizer.describe()}, schedule {phase.scheduler.describe()}",
            "loss weights": ", ".join(f"{k}={r.describe()}" for k, r in phase.loss.items())
            or default_loss,
        }
        lines.append(f"{index} | {phase.name} | until {phase.until.describe()}")
        for label, value in fields.items():
            lines += textwrap.wrap(
                value,
                PLAN_WIDTH,
                initial_indent=f"    {label:<12}  ",
                subsequent_indent=" " * 18,
                break_long_words=False,
            )
    return "\n".join(lines)


def describe_plan_change(saved: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Which phases differ between two ``TrainingPlan.to_dict()`` forms."""
    saved_phases, current_phases = saved.get("phases", []), current.get("phases", [])
    changes = []
    for index in range(max(len(saved_phases), len(current_phases))):
        old = saved_phases[index] if index < len(saved_phases) else None
        new = current_phases[index] if index < len(current_phases) else None
        if old == new:
            continue
        if old is None or new is None:
            changes.append(f"phases[{index}] {'added' if old is None else 'removed'}")
            continue
        fields = sorted(key for key in {*old, *new} if old.get(key) != new.get(key))
        changes.append(f"phases[{index}] ({new.get('name')}): {', '.join(fields)}")
    return "; ".join(changes)
