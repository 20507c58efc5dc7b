"""Schema of ``paired.training`` in ``conf/base/parameters_paired.yml``.

Everything but the model block is the single-cell training's own: optimiser, trainer,
seed, checkpoints and phases (``FitParams``).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import Field

from omics_vae.schemas.training import FitParams, default_hyperparameters


class PairedTrainingParams(FitParams):
    """``paired.training``: a paired model (joint_vae) and its hyperparameters."""

    data_kind: ClassVar[str] = "paired"

    model: str = Field("joint_vae", description="Registry name of a paired model: joint_vae.")
    hyperparameters: dict[str, Any] = Field(
        default_factory=dict, description="Architecture and loss weights of the model."
    )

    @property
    def model_hyperparameters(self) -> dict[str, Any]:
        return dict(self.hyperparameters)

    @classmethod
    def with_default_hyperparameters(cls, block: Mapping[str, Any]) -> dict[str, Any]:
        """The block with the chosen paired model's hyperparameters completed from its
        declaration."""
        block = copy.deepcopy(dict(block))
        spec = cls._model_spec(block.get("model", cls.model_fields["model"].default))
        given = block.get("hyperparameters") or {}
        if spec is not None and isinstance(given, Mapping):
            block["hyperparameters"] = {**default_hyperparameters(spec), **given}
        return block
