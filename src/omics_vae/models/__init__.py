"""Latent-variable models of single-cell omics data, in torch and Lightning (no Kedro).

- ``InVAE`` / ``InVAEModule`` (registry name ``"invae"``): inVAE, with a biological
  latent ``z_i`` and a technical latent ``z_s`` under covariate-conditioned priors.
- ``SCVIVAE`` / ``SCVIVAEModule`` (``"scvi_vae"``): a scVI-style baseline.
- ``JointVAE`` / ``JointVAEModule`` (``"joint_vae"``): paired two-platform data, one
  encoder/decoder per platform and a shared latent (``omics_vae.data.paired``).
- ``get_model_class(name)`` / ``register_model``: the registry pipelines pick models from.

Each model declares its hyperparameters and their defaults once, as a frozen dataclass
(``InVAEHyperparameters``, ``SCVIVAEHyperparameters``, ``JointVAEHyperparameters``,
sharing ``Hyperparameters`` and ``NetworkHyperparameters``): the Lightning class takes
them as keyword arguments, its module reads them from the dataclass, and the parameter
schema, configuration reference and model card derive from its fields.

Each ``*Module`` is a plain ``nn.Module`` with ``inference(batch)`` ->
``generative(**generative_inputs(batch, inference_outputs))`` -> ``loss(...)`` returning a
``LossOutput``; the Lightning classes wrap one, own the hyperparameters and add
``get_latent`` and ``reconstruction_error``. ``trainer.fit`` trains any of them through a
plan of phases (``phases``: optimisers, schedules, freezing, loss weights such as the KL
warm-up, stopping). Batches are the dicts of ``omics_vae.data.tensors`` (keys in
``BATCH_KEYS``).

Typical use::

    from omics_vae.models import get_model_class
    from omics_vae.models.trainer import FitSettings, fit

    model = get_model_class("invae").from_anndata(
        adata, {"bio_keys": ["cell_type"], "tech_keys": ["batch"], "n_latent_bio": 30}
    )
    data = model.make_tensors(adata, counts_layer="counts")
    result = fit(model, data.subset("train"), data.subset("val"), FitSettings(max_epochs=100))
    latent = result.model.get_latent(data)  # {"z_i": ..., "z_s": ..., "z": ...}
"""

from omics_vae.models.base import (
    BaseVAE,
    Hyperparameters,
    LossOutput,
    NetworkHyperparameters,
    SingleCellVAE,
    VAEModule,
)
from omics_vae.models.distributions import (
    gaussian_kl,
    log_rising_factorial_sum,
    negative_binomial_log_likelihood,
    softmax_nb_log_likelihood,
)
from omics_vae.models.invae import InVAE, InVAEHyperparameters, InVAEModule
from omics_vae.models.joint_modules import JointVAEHyperparameters, JointVAEModule
from omics_vae.models.joint_vae import JointVAE
from omics_vae.models.registry import (
    MODEL_REGISTRY,
    UnknownModelError,
    get_model_class,
    register_model,
)
from omics_vae.models.scvi_vae import SCVIVAE, SCVIVAEHyperparameters, SCVIVAEModule

__all__ = [
    "MODEL_REGISTRY",
    "SCVIVAE",
    "BaseVAE",
    "Hyperparameters",
    "InVAE",
    "InVAEHyperparameters",
    "InVAEModule",
    "JointVAE",
    "JointVAEHyperparameters",
    "JointVAEModule",
    "LossOutput",
    "NetworkHyperparameters",
    "SCVIVAEHyperparameters",
    "SCVIVAEModule",
    "SingleCellVAE",
    "UnknownModelError",
    "VAEModule",
    "gaussian_kl",
    "get_model_class",
    "log_rising_factorial_sum",
    "negative_binomial_log_likelihood",
    "register_model",
    "softmax_nb_log_likelihood",
]
