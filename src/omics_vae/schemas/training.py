"""Schema of ``conf/base/parameters_training.yml``."""

from __future__ import annotations

import copy
import dataclasses
import functools
import typing
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, ValidationError, create_model, model_validator

from omics_vae.models.hyperparameters import Hyperparameters
from omics_vae.models.phases import (
    OptimizerSpec,
    Phase,
    PhasePlanError,
    Ramp,
    SchedulerSpec,
    TrainingPlan,
    Until,
    check_plan,
    format_plan,
    single_phase_plan,
    with_kl_warmup,
)
from omics_vae.models.registry import MODEL_SPECS, ModelSpec, get_model_class, model_spec
from omics_vae.params import StrictModel

if TYPE_CHECKING:
    from omics_vae.models.base import BaseVAE

# Hyperparameters the training node takes from the optimizer block; the ones taken from
# the data are each model class's ``data_hyperparameters``.
OPTIMIZER_HYPERPARAMETERS = frozenset({"learning_rate", "weight_decay", "optimizer"})


class CovariateParams(StrictModel):
    """obs columns fed to the model as covariates; ``auto`` follows data_processing."""

    bio: list[str] | Literal["auto"] = Field(
        "auto", description="Biological covariates (inVAE's z_i prior); auto = the cell-type key."
    )
    tech: list[str] | Literal["auto"] = Field(
        "auto", description="Technical covariates (z_s prior, decoder batch); auto = the batch key."
    )
    unlabelled_category: str | None = Field(
        None,
        description=(
            "A value of the first bio covariate meaning 'label unknown' (e.g. unknown): "
            "those cells, like cells with no value, train as unlabelled cells."
        ),
    )


class OptimizerParams(StrictModel):
    name: Literal["adam", "adamw"] = "adam"
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-6, ge=0)


class TrainerParams(StrictModel):
    max_epochs: int | Literal["auto"] = Field(
        "auto", description="Epochs; auto follows scvi-tools: min(400, 400 * 20,000 / cells)."
    )
    batch_size: int = Field(128, gt=1)
    eval_batch_size: int = Field(1024, gt=0)
    gradient_clip_val: float | None = Field(None, gt=0)
    early_stopping_patience: int | None = Field(20, ge=0)
    early_stopping_min_delta: float = Field(0.0, ge=0)
    accelerator: str = "auto"
    devices: int | str | list[int] = "auto"
    precision: str | int = "32-true"
    strategy: str = "auto"
    deterministic: bool = False
    fast_dev_run: bool | int = False
    enable_progress_bar: bool | None = None
    num_threads: int | None = Field(
        None,
        gt=0,
        description=(
            "CPU threads for torch; null: the usable cores less those other processes keep "
            "busy (1-minute load average), at least 1, or OMP_NUM_THREADS when set."
        ),
    )


class RampParams(StrictModel):
    """A loss weight ramped linearly from ``start`` to ``end`` across the phase."""

    start: float
    end: float
    epochs: int | None = Field(None, ge=1, description="Ramp length; null: the whole phase.")


class PhaseOptimizerParams(StrictModel):
    name: str | None = Field(None, description="adam | adamw | sgd | rmsprop | adagrad.")
    args: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments of the torch optimiser (lr, ...)."
    )
    parts: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-part overrides of args, e.g. {encoder: {lr: 1e-4}}."
    )


class PhaseSchedulerParams(StrictModel):
    name: str = Field(
        "constant",
        description="constant | linear_warmup | cosine | step | reduce_on_plateau | one_cycle.",
    )
    args: dict[str, Any] = Field(default_factory=dict)
    interval: Literal["epoch", "step"] = "epoch"


class PlateauParams(StrictModel):
    metric: str = "val/loss"
    patience: int = Field(..., ge=1)
    min_delta: float = Field(0.0, ge=0)


class UntilParams(StrictModel):
    """``{epochs: N}``, ``{metric, below|above, max_epochs}`` or ``{plateau: {...}}``."""

    epochs: int | None = Field(None, ge=1)
    metric: str | None = None
    below: float | None = None
    above: float | None = None
    plateau: PlateauParams | None = None
    max_epochs: int | None = Field(None, ge=1, description="Cap of the metric criteria.")

    @model_validator(mode="after")
    def _one_criterion(self) -> UntilParams:
        threshold = self.metric is not None or self.below is not None or self.above is not None
        chosen = [self.epochs is not None, threshold, self.plateau is not None]
        if sum(chosen) != 1:
            raise ValueError(
                "give exactly one criterion: epochs: N; metric with below or above (and "
                "max_epochs); or plateau: {metric, patience, min_delta}"
            )
        if threshold and (self.metric is None or (self.below is None) == (self.above is None)):
            raise ValueError("a metric criterion needs metric and one of below or above")
        if self.epochs is not None and self.max_epochs is not None:
            raise ValueError("max_epochs caps metric criteria; with epochs: N leave it out")
        return self

    def to_until(self) -> Until:
        if self.plateau is not None:
            return Until(
                metric=self.plateau.metric,
                patience=self.plateau.patience,
                min_delta=self.plateau.min_delta,
                max_epochs=self.max_epochs,
            )
        return Until(
            epochs=self.epochs,
            metric=self.metric,
            below=self.below,
            above=self.above,
            max_epochs=self.max_epochs,
        )


class PhaseDefaultsParams(StrictModel):
    """What phases inherit when they leave a field out."""

    trainable: list[str] | Literal["all"] | None = Field(
        None, description="Parts trained; all (default) or a list."
    )
    frozen: list[str] | None = Field(None, description="Parts left out of trainable.")
    optimizer: PhaseOptimizerParams | None = None
    scheduler: PhaseSchedulerParams | None = None
    loss: dict[str, float | RampParams] | None = Field(
        None, description="Loss-weight overrides: kl_weight (or beta), tc_weight, ..."
    )
    until: UntilParams | None = None


class PhaseParams(PhaseDefaultsParams):
    name: str = Field(..., min_length=1)


class FitParams(StrictModel):
    """How any registered model is trained: optimiser, trainer, seed, checkpoints, phases.

    Subclasses say which models they train (``data_kind``) and where their
    hyperparameters sit (``model_hyperparameters``).
    """

    data_kind: ClassVar[str] = "single_cell"

    model: str
    optimizer: OptimizerParams = OptimizerParams()
    trainer: TrainerParams = TrainerParams()
    seed: int = 0
    resume_from: str | None = Field(
        None, description="null trains afresh; 'last' continues the newest run; or a path."
    )
    checkpoint_dir: str = "data/06_models/lightning"
    phases: list[PhaseParams] | None = Field(
        None, description="Ordered training phases; null: one phase with the settings above."
    )
    phase_defaults: PhaseDefaultsParams = Field(
        default_factory=PhaseDefaultsParams, description="Fields phases inherit."
    )
    force_plan_change: bool = Field(
        False, description="Resume even when the phases differ from the checkpoint's."
    )
    dry_run: bool = Field(False, description="Validate and print the training plan, then stop.")

    @property
    def model_hyperparameters(self) -> dict[str, Any]:
        """The chosen model's hyperparameters as given (defaults left out)."""
        raise NotImplementedError

    @classmethod
    def hyperparameters_key(cls, model: str) -> str:
        """Where ``model``'s hyperparameters sit in this block, as a dotted key."""
        return "hyperparameters"

    @property
    def resolved_hyperparameters(self) -> dict[str, Any]:
        """The chosen model's hyperparameters with every default filled in from its
        declaration (``BaseVAE.hyperparameter_class``), as JSON values."""
        schema = hyperparameter_schema(model_spec(self.model))
        return schema.model_validate(self.model_hyperparameters).model_dump(mode="json")

    def effective_parameters(self) -> dict[str, Any]:
        """The block as JSON, with the chosen model's hyperparameters resolved and no other
        model's: the same for a block that writes a default out and one that leaves it
        to the declaration. What decides a trained model (``training.identity``) and what
        its model card records."""
        parameters = self.model_dump(mode="json")
        *parents, leaf = self.hyperparameters_key(self.model).split(".")
        parameters["hyperparameters"] = {}
        node = parameters
        for part in parents:
            node = node[part]
        node[leaf] = self.resolved_hyperparameters
        return parameters

    @classmethod
    def with_default_hyperparameters(cls, block: Mapping[str, Any]) -> dict[str, Any]:
        """A block as configured (a plain dict) with model hyperparameters completed from
        the models' declarations, values given winning. The configuration loader does
        this (``families.with_default_hyperparameters``), so runs log, compare and sweep
        every effective hyperparameter although the YAML lists none of the defaults.
        ``FitParams`` itself knows no hyperparameters: the block comes back as it was."""
        return copy.deepcopy(dict(block))

    @classmethod
    def _model_spec(cls, name: Any) -> ModelSpec | None:
        """The registered model of this block's data kind named ``name``, if any."""
        spec = MODEL_SPECS.get(name) if isinstance(name, str) else None
        return spec if spec and spec.data_kind == cls.data_kind else None

    @model_validator(mode="after")
    def _known_model_and_hyperparameters(self) -> Self:
        try:
            spec = model_spec(self.model)
        except KeyError as error:
            raise ValueError(f"model: {error}") from None
        if spec.data_kind != self.data_kind:
            raise ValueError(
                f"model: '{self.model}' trains on {spec.data_kind} data, not on "
                f"{self.data_kind} data"
            )
        try:
            hyperparameter_schema(spec).model_validate(self.model_hyperparameters)
        except ValidationError as error:
            problems = "; ".join(
                f"{self.hyperparameters_key(self.model)}.{'.'.join(map(str, p['loc']))}: {p['msg']}"
                for p in error.errors()
            )
            raise ValueError(problems) from None
        return self

    @model_validator(mode="after")
    def _positive_epochs(self) -> Self:
        if self.trainer.max_epochs != "auto" and self.trainer.max_epochs < 1:
            raise ValueError("trainer.max_epochs must be 'auto' or a positive integer")
        return self

    @model_validator(mode="after")
    def _runnable_phases(self) -> Self:
        if self.phases is None:
            return self
        model = probe_model(self)
        try:
            check_plan(build_plan(self, model), model)
        except PhasePlanError as error:
            raise ValueError(str(error)) from None
        return self


class TrainingDataParams(StrictModel):
    """How the counts are held in memory for training and embedding. Dense and sparse
    give the same model for the same seed (each batch is densified exactly), so this
    block is not part of the training identity."""

    counts_format: Literal["auto", "dense", "sparse"] = Field(
        "auto",
        description="auto: dense (faster batches) unless the dense matrix would exceed "
        "max_dense_gb, then sparse CSR, one batch densified at a time.",
    )
    max_dense_gb: float | None = Field(
        None, gt=0, description="Budget of a dense count matrix; null: an eighth of the RAM."
    )


class TrainingParams(FitParams):
    """``training``: a single-cell model, its hyperparameters kept per model name."""

    model: str = Field("invae", description="Registry name: invae or scvi_vae.")
    covariates: CovariateParams = CovariateParams()
    data: TrainingDataParams = TrainingDataParams()
    hyperparameters: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per model name: its architecture and loss settings."
    )

    @property
    def model_hyperparameters(self) -> dict[str, Any]:
        return dict(self.hyperparameters.get(self.model, {}))

    @classmethod
    def hyperparameters_key(cls, model: str) -> str:
        return f"hyperparameters.{model}"

    @classmethod
    def with_default_hyperparameters(cls, block: Mapping[str, Any]) -> dict[str, Any]:
        """The block with the chosen model's hyperparameters, and those of every other
        single-cell model it has a block for, completed from their declarations."""
        block = copy.deepcopy(dict(block))
        given = block.get("hyperparameters") or {}
        if not isinstance(given, Mapping):
            return block  # left for validation to report
        completed = dict(given)
        for name in dict.fromkeys([block.get("model", cls.model_fields["model"].default), *given]):
            spec = cls._model_spec(name)
            values = given.get(name) or {}
            if spec is not None and isinstance(values, Mapping):
                completed[name] = {**default_hyperparameters(spec), **values}
        block["hyperparameters"] = completed
        return block


LOSS_WEIGHT_ALIASES = {"beta": "kl_weight"}


def probe_model(config: FitParams) -> BaseVAE:
    """A tiny instance of the configured model, enough to know its parts and loss weights
    before any data is read."""
    return get_model_class(config.model).probe(**config.model_hyperparameters)


def plan_table(config: FitParams, section: str = "training") -> str:
    """The plan of ``config`` as a table, on a probe of the model: no data is read.

    Raises:
        PhasePlanError: The phases do not fit the model.
    """
    model = probe_model(config)
    plan = build_plan(config, model)
    if plan is not None:
        return format_plan(plan)
    max_epochs = config.trainer.max_epochs
    plain = plain_plan(config, model, None if max_epochs == "auto" else max_epochs)
    return f"No {section}.phases: one phase with the plain settings.\n{format_plan(plain)}"


def build_plan(config: FitParams, model: BaseVAE) -> TrainingPlan | None:
    """The phases of ``config`` with inherited fields filled in; ``None`` without phases.

    A field a phase leaves out comes from ``phase_defaults``; the optimiser's name and
    arguments start from ``training.optimizer``; ``trainable: all`` means every part; a
    phase that sets no ``kl_weight`` carries the model's KL warm-up, counted in the
    run's epochs (``models.phases.kl_warmup``).

    Args:
        config: Validated training parameters.
        model: The model (or a probe of it): its named parts and KL warm-up.

    Raises:
        PhasePlanError: A phase without ``until``, or an unknown frozen part.
    """
    if config.phases is None:
        return None
    phases = tuple(
        _resolve_phase(config, index, phase, model.module.named_parts())
        for index, phase in enumerate(config.phases)
    )
    return with_kl_warmup(TrainingPlan(phases), model)


def plain_plan(config: FitParams, model: BaseVAE, max_epochs: int | None) -> TrainingPlan:
    """The single phase a run without ``phases`` trains in (``models.phases.single_phase_plan``)."""
    return single_phase_plan(
        model,
        _base_optimizer(config),
        max_epochs,
        patience=config.trainer.early_stopping_patience,
        min_delta=config.trainer.early_stopping_min_delta,
    )


def _base_optimizer(config: FitParams) -> OptimizerSpec:
    return OptimizerSpec(
        config.optimizer.name,
        {"lr": config.optimizer.learning_rate, "weight_decay": config.optimizer.weight_decay},
    )


def _resolve_phase(
    config: FitParams, index: int, phase: PhaseParams, parts: Mapping[str, Any]
) -> Phase:
    where = f"phases[{index}] ({phase.name})"
    defaults = config.phase_defaults

    def inherited(name: str):
        value = getattr(phase, name)
        return getattr(defaults, name) if value is None else value

    frozen = inherited("frozen") or []
    unknown = sorted(set(frozen) - set(parts))
    if unknown:
        raise PhasePlanError(
            f"{where}.frozen: unknown part(s) {unknown}; parts of this model: {sorted(parts)}"
        )
    trainable = inherited("trainable")
    if trainable is None:
        trainable = "all"
    listed = list(parts) if trainable == "all" else trainable
    until = inherited("until")
    if until is None:
        raise PhasePlanError(
            f"{where}.until: missing; give it here or in phase_defaults (epochs: N, a metric "
            "with below/above, or plateau)"
        )
    base = _base_optimizer(config)
    optimizer_layers = [o for o in (defaults.optimizer, phase.optimizer) if o is not None]
    name = next((o.name for o in reversed(optimizer_layers) if o.name), base.name)
    args = dict(base.args)
    part_args: dict[str, dict[str, Any]] = {}
    for layer in optimizer_layers:
        args.update(layer.args)
        for part, overrides in layer.parts.items():
            part_args.setdefault(part, {}).update(overrides)
    scheduler = inherited("scheduler") or PhaseSchedulerParams()
    loss = {**(defaults.loss or {}), **(phase.loss or {})}
    return Phase(
        name=phase.name,
        trainable=tuple(part for part in listed if part not in frozen),
        optimizer=OptimizerSpec(name.lower(), args, part_args),
        scheduler=SchedulerSpec(scheduler.name, dict(scheduler.args), scheduler.interval),
        loss={LOSS_WEIGHT_ALIASES.get(k, k): _ramp(v) for k, v in loss.items()},
        until=until.to_until(),
    )


def _ramp(value: float | RampParams) -> Ramp:
    if isinstance(value, RampParams):
        return Ramp(value.start, value.end, value.epochs)
    return Ramp(float(value), float(value))


def hyperparameter_schema(model: ModelSpec | type[BaseVAE]) -> type[StrictModel]:
    """A pydantic model of the hyperparameters users may set for ``model`` (its spec or
    class): the fields of its declaration with their types, defaults and descriptions,
    but the optimiser's (set from ``optimizer``)."""
    declaration = _declaration(model)
    return _schema_of(declaration)


@functools.cache
def _schema_of(declaration: type[Hyperparameters]) -> type[StrictModel]:
    hints = typing.get_type_hints(declaration)
    defaults = {field.name: field.default for field in dataclasses.fields(declaration)}
    descriptions = declaration.descriptions()
    fields = {
        name: (hints[name], Field(defaults[name], description=descriptions.get(name)))
        for name in declaration.names()
        if name not in OPTIMIZER_HYPERPARAMETERS
    }
    return create_model(
        declaration.__name__,
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )


def _declaration(model: ModelSpec | type[BaseVAE]) -> type[Hyperparameters]:
    return model.hyperparameters if isinstance(model, ModelSpec) else model.hyperparameter_class


def default_hyperparameters(model: ModelSpec | type[BaseVAE]) -> dict[str, Any]:
    """Every hyperparameter users may set for ``model`` (its spec or class) at its
    declared default, as JSON values."""
    return hyperparameter_schema(model)().model_dump(mode="json")
