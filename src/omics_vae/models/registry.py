"""Registry of the trainable models, so pipelines pick one by name from parameters.

Each model has a ``ModelSpec``: its name, the kind of data it trains on, its
hyperparameter declaration and the module of its LightningModule. Reading and validating
parameters needs only the specs (``model_spec``), which import no torch; the class is
imported when a model is built (``get_model_class``). The built-in models' specs are
listed here; a new model plugs in by decorating its LightningModule, which adds both::

    @register_model
    class JointVAE(BaseVAE):
        registry_name = "joint_vae"
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from omics_vae.errors import ProjectError
from omics_vae.models.hyperparameters import (
    Hyperparameters,
    InVAEHyperparameters,
    JointVAEHyperparameters,
    SCVIVAEHyperparameters,
)

if TYPE_CHECKING:
    from omics_vae.models.base import BaseVAE

ModelT = TypeVar("ModelT", bound="type[BaseVAE]")


@dataclass(frozen=True)
class ModelSpec:
    """What the configuration needs to know of a model, without importing it.

    Attributes:
        name: The registry name (``training.model``).
        data_kind: ``single_cell`` or ``paired``.
        hyperparameters: The model's hyperparameter declaration.
        module: The module that defines (and registers) its LightningModule.
    """

    name: str
    data_kind: str
    hyperparameters: type[Hyperparameters]
    module: str


MODEL_SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("invae", "single_cell", InVAEHyperparameters, "omics_vae.models.invae"),
        ModelSpec("scvi_vae", "single_cell", SCVIVAEHyperparameters, "omics_vae.models.scvi_vae"),
        ModelSpec("joint_vae", "paired", JointVAEHyperparameters, "omics_vae.models.joint_vae"),
    )
}


# The classes registered so far; a built-in model's module registers it when imported.
MODEL_REGISTRY: dict[str, type[BaseVAE]] = {}


class UnknownModelError(ProjectError, KeyError):
    """No model is registered under the requested name."""

    def __str__(self) -> str:
        # KeyError's default repr-quotes the message; show it as written.
        return str(self.args[0])


def register_model(cls: ModelT) -> ModelT:
    """Class decorator adding a model to ``MODEL_REGISTRY`` (and its spec to
    ``MODEL_SPECS``) under its ``registry_name``.

    Args:
        cls: A LightningModule class with a non-empty ``registry_name``.

    Returns:
        The class, unchanged.

    Raises:
        ValueError: The name is empty or taken by another class, or a built-in model's
            class disagrees with its spec.
    """
    name = getattr(cls, "registry_name", "")
    if not name:
        raise ValueError(f"{cls.__name__} needs a non-empty registry_name to be registered")
    declared = MODEL_SPECS.get(name)
    if declared is not None and cls.__module__ != declared.module:
        importlib.import_module(declared.module)  # the built-in class, to refuse the impostor
    existing = MODEL_REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"model name {name!r} is already registered to {existing.__module__}."
            f"{existing.__qualname__}"
        )
    spec = ModelSpec(name, cls.data_kind, cls.hyperparameter_class, cls.__module__)
    if declared is not None and declared != spec:
        raise ValueError(f"{cls.__qualname__} disagrees with its spec in MODEL_SPECS: {declared}")
    MODEL_SPECS[name] = spec
    MODEL_REGISTRY[name] = cls
    return cls


def model_spec(name: str) -> ModelSpec:
    """The spec of the model registered as ``name``, without importing it.

    Raises:
        UnknownModelError: No such model; the message lists the valid names.
    """
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; registered models: {', '.join(sorted(MODEL_SPECS))}"
        ) from None


def get_model_class(name: str) -> type[BaseVAE]:
    """The LightningModule class registered as ``name`` (imported on first use).

    Args:
        name: A registry name, e.g. ``"invae"`` or ``"scvi_vae"``.

    Raises:
        UnknownModelError: No such model; the message lists the valid names.
    """
    spec = model_spec(name)
    if name not in MODEL_REGISTRY:
        importlib.import_module(spec.module)
    return MODEL_REGISTRY[name]
