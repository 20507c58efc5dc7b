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

The names below are imported on first use (PEP 562): ``import omics_vae.models.phases``
or ``.hyperparameters`` reads no torch, so validating parameters stays fast.
"""

from __future__ import annotations

from omics_vae.lazy import lazy_exports

# Where each public name is defined, imported when first asked for.
_WHERE = {
    "BaseVAE": "base",
    "LossOutput": "base",
    "SingleCellVAE": "base",
    "VAEModule": "base",
    "Hyperparameters": "hyperparameters",
    "NetworkHyperparameters": "hyperparameters",
    "InVAEHyperparameters": "hyperparameters",
    "SCVIVAEHyperparameters": "hyperparameters",
    "JointVAEHyperparameters": "hyperparameters",
    "gaussian_kl": "distributions",
    "log_rising_factorial_sum": "distributions",
    "negative_binomial_log_likelihood": "distributions",
    "softmax_nb_log_likelihood": "distributions",
    "InVAE": "invae",
    "InVAEModule": "invae",
    "JointVAEModule": "joint_modules",
    "JointVAE": "joint_vae",
    "SCVIVAE": "scvi_vae",
    "SCVIVAEModule": "scvi_vae",
    "MODEL_REGISTRY": "registry",
    "MODEL_SPECS": "registry",
    "ModelSpec": "registry",
    "model_spec": "registry",
    "UnknownModelError": "registry",
    "get_model_class": "registry",
    "register_model": "registry",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _WHERE)
