"""Registry of the trainable models, so pipelines pick one by name from parameters.

A new model plugs in by decorating its LightningModule::

    @register_model
    class JointVAE(BaseVAE):
        registry_name = "joint_vae"
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from omics_vae.errors import ProjectError

if TYPE_CHECKING:
    from omics_vae.models.base import BaseVAE

ModelT = TypeVar("ModelT", bound="type[BaseVAE]")

MODEL_REGISTRY: dict[str, type[BaseVAE]] = {}


class UnknownModelError(ProjectError, KeyError):
    """No model is registered under the requested name."""

    def __str__(self) -> str:
        # KeyError's default repr-quotes the message; show it as written.
        return str(self.args[0])


def register_model(cls: ModelT) -> ModelT:
    """Class decorator adding a model to ``MODEL_REGISTRY`` under its ``registry_name``.

    Args:
        cls: A LightningModule class with a non-empty ``registry_name``.

    Returns:
        The class, unchanged.

    Raises:
        ValueError: The name is empty or taken by another class.
    """
    name = getattr(cls, "registry_name", "")
    if not name:
        raise ValueError(f"{cls.__name__} needs a non-empty registry_name to be registered")
    existing = MODEL_REGISTRY.get(name)
    if existing is not None and existing is not cls:
        raise ValueError(
            f"model name {name!r} is already registered to {existing.__module__}."
            f"{existing.__qualname__}"
        )
    MODEL_REGISTRY[name] = cls
    return cls


def get_model_class(name: str) -> type[BaseVAE]:
    """The model class registered as ``name``.

    Args:
        name: A registry name, e.g. ``"invae"`` or ``"scvi_vae"``.

    Returns:
        The LightningModule class.

    Raises:
        UnknownModelError: No such model; the message lists the valid names.
    """
    # The built-in models are registered on import of omics_vae.models, which runs
    # before this module can be imported.
    try:
        return MODEL_REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; registered models: {', '.join(sorted(MODEL_REGISTRY))}"
        ) from None
