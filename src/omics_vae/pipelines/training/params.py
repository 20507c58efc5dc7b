"""Schema of ``conf/base/parameters_training.yml``."""

from __future__ import annotations

import inspect
import typing
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, create_model, model_validator

from omics_vae.models import get_model_class
from omics_vae.params import StrictModel

# Hyperparameters the training node derives from the data or from other blocks.
DERIVED_HYPERPARAMETERS = frozenset(
    {"n_genes", "bio_categories", "tech_categories", "learning_rate", "weight_decay", "optimizer"}
)


class CovariateParams(StrictModel):
    """obs columns fed to the model as covariates; ``auto`` follows data_processing."""

    bio: list[str] | Literal["auto"] = Field(
        "auto", description="Biological covariates (inVAE's z_i prior); auto = the cell-type key."
    )
    tech: list[str] | Literal["auto"] = Field(
        "auto", description="Technical covariates (z_s prior, decoder batch); auto = the batch key."
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
    num_threads: int | None = Field(None, gt=0)


class TrainingParams(StrictModel):
    model: str = Field("invae", description="Registry name: invae or scvi_vae.")
    covariates: CovariateParams = CovariateParams()
    hyperparameters: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per model name: its architecture and loss settings."
    )
    optimizer: OptimizerParams = OptimizerParams()
    trainer: TrainerParams = TrainerParams()
    seed: int = 0
    resume_from: str | None = Field(
        None, description="null trains afresh; 'last' continues the newest run; or a path."
    )
    checkpoint_dir: str = "data/06_models/lightning"

    @model_validator(mode="after")
    def _known_model_and_hyperparameters(self) -> TrainingParams:
        try:
            model_class = get_model_class(self.model)
        except KeyError as error:
            raise ValueError(f"model: {error}") from None
        try:
            hyperparameter_schema(model_class).model_validate(self.model_hyperparameters)
        except ValidationError as error:
            problems = "; ".join(
                f"hyperparameters.{self.model}.{'.'.join(map(str, p['loc']))}: {p['msg']}"
                for p in error.errors()
            )
            raise ValueError(problems) from None
        return self

    @model_validator(mode="after")
    def _positive_epochs(self) -> TrainingParams:
        if self.trainer.max_epochs != "auto" and self.trainer.max_epochs < 1:
            raise ValueError("trainer.max_epochs must be 'auto' or a positive integer")
        return self

    @property
    def model_hyperparameters(self) -> dict[str, Any]:
        return dict(self.hyperparameters.get(self.model, {}))


def hyperparameter_schema(model_class: type) -> type[StrictModel]:
    """A pydantic model of the constructor arguments users may set for ``model_class``."""
    hints = typing.get_type_hints(model_class.__init__)
    parameters = inspect.signature(model_class.__init__).parameters
    fields = {
        name: (hints.get(name, Any), parameters[name].default)
        for name in model_class.hyperparameter_names()
        if name not in DERIVED_HYPERPARAMETERS
    }
    return create_model(
        f"{model_class.__name__}Hyperparameters",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
