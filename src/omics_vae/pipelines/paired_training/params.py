"""Schema of ``paired.training`` in ``conf/base/parameters_paired.yml``.

The optimiser and trainer blocks are the single-cell training pipeline's own classes.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, create_model, model_validator

from omics_vae.models import get_model_class
from omics_vae.models.joint_vae import DATA_HYPERPARAMETERS
from omics_vae.params import StrictModel
from omics_vae.pipelines.training.params import OptimizerParams, TrainerParams

# Set from the data or from the optimizer block, never in hyperparameters.
DERIVED = frozenset({*DATA_HYPERPARAMETERS, "learning_rate", "weight_decay", "optimizer"})
PAIRED_MODELS = ("joint_vae",)


class PairedTrainingParams(StrictModel):
    model: str = Field("joint_vae", description="Registry name of a paired model: joint_vae.")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Architecture and loss weights of the model."
    )
    optimizer: OptimizerParams = OptimizerParams()
    trainer: TrainerParams = TrainerParams()
    seed: int = 0
    resume_from: str | None = Field(
        None, description="null trains afresh; 'last' continues the newest run; or a path."
    )
    checkpoint_dir: str = "data/06_models/lightning"

    @model_validator(mode="after")
    def _known_model_and_hyperparameters(self) -> PairedTrainingParams:
        if self.model not in PAIRED_MODELS:
            raise ValueError(f"model: {self.model!r} is not a paired model; choose {PAIRED_MODELS}")
        try:
            hyperparameter_schema(get_model_class(self.model)).model_validate(self.hyperparameters)
        except ValidationError as error:
            problems = "; ".join(
                f"hyperparameters.{'.'.join(map(str, p['loc']))}: {p['msg']}"
                for p in error.errors()
            )
            raise ValueError(problems) from None
        if self.trainer.max_epochs != "auto" and self.trainer.max_epochs < 1:
            raise ValueError("trainer.max_epochs must be 'auto' or a positive integer")
        return self


def hyperparameter_schema(model_class: type) -> type[StrictModel]:
    """A pydantic model of the constructor arguments users may set for ``model_class``."""
    hints = typing.get_type_hints(model_class.__init__)
    parameters = inspect.signature(model_class.__init__).parameters
    fields = {
        name: (hints.get(name, Any), parameters[name].default)
        for name in model_class.hyperparameter_names()
        if name not in DERIVED
    }
    return create_model(
        f"Paired{model_class.__name__}Hyperparameters",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
