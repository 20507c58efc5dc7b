"""A scVI-style VAE baseline (Lopez et al., 2018), as scvi-tools' ``SCVI`` with NB likelihood.

At equal settings the networks match scvi-tools' ``VAE(gene_likelihood="nb",
dispersion="gene", use_observed_lib_size=True)``: an encoder on ``log1p(counts)``
(covariates only with ``encode_covariates``), a standard-normal prior, and a decoder
whose hidden layers all receive the one-hot technical covariates (scVI's batch and
categorical covariates), softmax frequencies times the observed library size, and one
learned inverse dispersion per gene. Left out: scVI's unused zero-inflation head and
library-size encoder, which the NB / observed-library setting never evaluates in the loss.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from omics_vae.data.tensors import CovariateEncoder
from omics_vae.models.base import BaseVAE, Batch, LossOutput, OptimizerName, VAEModule
from omics_vae.models.components import (
    GaussianEncoder,
    GeneDispersion,
    NBDecoder,
    NormPlacement,
    norm_flags,
)
from omics_vae.models.distributions import gaussian_kl
from omics_vae.models.registry import register_model


class SCVIVAEModule(VAEModule):
    """The scVI networks and loss.

    Args:
        n_genes: Number of genes.
        n_tech: Width of the one-hot technical covariates injected into the decoder.
        n_latent: Latent dimensions.
        n_hidden: Hidden width.
        n_layers: Hidden layers of encoder and decoder.
        dropout: Encoder dropout rate.
        batch_norm: Batch norm placement (scVI's ``use_batch_norm``; ``True`` = both).
        layer_norm: Layer norm placement (scVI's ``use_layer_norm``).
        activation: Activation name.
        encode_covariates: Give the encoder the technical covariates too.
        deeply_inject_covariates: Covariates into every hidden layer, not just the first.
    """

    latent_keys: ClassVar[tuple[str, ...]] = ("z",)

    def __init__(
        self,
        n_genes: int,
        n_tech: int = 0,
        *,
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout: float = 0.1,
        batch_norm: bool | NormPlacement = "both",
        layer_norm: bool | NormPlacement = "none",
        activation: str = "relu",
        encode_covariates: bool = False,
        deeply_inject_covariates: bool = True,
    ) -> None:
        super().__init__()
        self.encode_covariates = encode_covariates
        bn_encoder, bn_decoder = norm_flags(batch_norm)
        ln_encoder, ln_decoder = norm_flags(layer_norm)
        self.encoder = GaussianEncoder(
            n_genes,
            n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_covariates=n_tech if encode_covariates else 0,
            inject_covariates=deeply_inject_covariates,
            batch_norm=bn_encoder,
            layer_norm=ln_encoder,
            activation=activation,
            dropout=dropout,
        )
        self.decoder = NBDecoder(
            n_latent,
            n_genes,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_covariates=n_tech,
            inject_covariates=deeply_inject_covariates,
            batch_norm=bn_decoder,
            layer_norm=ln_decoder,
            activation=activation,
        )
        self.dispersion = GeneDispersion(n_genes)

    def inference(self, batch: Batch, sample: bool = True) -> dict[str, torch.Tensor]:
        """Encode ``log1p(counts)`` (and the technical covariates if configured).

        Args:
            batch: A batch dict.
            sample: Draw ``z`` by reparameterisation; else ``z`` is the posterior mean.

        Returns:
            ``qz_mean``, ``qz_var`` and ``z``, each ``(b, n_latent)``.
        """
        tech = batch["tech"]
        covariates = tech if self.encode_covariates and tech.shape[1] else None
        mean, var = self.encoder(torch.log1p(batch["counts"]), covariates)
        z = mean + var.sqrt() * torch.randn_like(mean) if sample else mean
        return {"qz_mean": mean, "qz_var": var, "z": z}

    def generative_inputs(
        self, batch: Batch, inference_outputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``z``, the log library sizes and the technical covariates."""
        return {
            "z": inference_outputs["z"],
            "log_library": batch["log_library"],
            "tech": batch["tech"],
        }

    def generative(
        self, z: torch.Tensor, log_library: torch.Tensor, tech: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Decoder log-means and dispersions.

        Args:
            z: ``(b, n_latent)`` latents.
            log_library: ``(b, 1)`` log library sizes.
            tech: ``(b, n_tech)`` one-hot technical covariates.

        Returns:
            ``px_logits`` ``(b, n_genes)`` (``log mu = log_softmax(px_logits) +
            log_library``), ``log_library`` and ``log_theta`` ``(n_genes,)``.
        """
        return {
            "px_logits": self.decoder(z, tech if tech.shape[1] else None),
            "log_library": log_library,
            "log_theta": self.dispersion(),
        }

    def loss(
        self,
        batch: Batch,
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
        kl_weight: float = 1.0,
    ) -> LossOutput:
        """``mean(-log p(x|z) + kl_weight * KL(q(z|x) || N(0, I)))``.

        Args:
            batch: The batch.
            inference_outputs: ``inference`` output.
            generative_outputs: ``generative`` output.
            kl_weight: Weight of the KL term (the warm-up's current beta).

        Returns:
            The loss.
        """
        n_cells = batch["counts"].shape[0]
        reconstruction = (
            -self.reconstruction_log_likelihood(batch, generative_outputs, reduction="sum")
            / n_cells
        )
        kl = gaussian_kl(inference_outputs["qz_mean"], inference_outputs["qz_var"]).mean()
        return LossOutput(reconstruction + kl_weight * kl, reconstruction, kl)

    def latent(self, inference_outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Posterior mean ``z``."""
        return {"z": inference_outputs["qz_mean"]}

    def named_parts(self) -> dict[str, nn.Module]:
        """``encoder``, ``decoder`` and ``dispersion``."""
        return {"encoder": self.encoder, "decoder": self.decoder, "dispersion": self.dispersion}


@register_model
class SCVIVAE(BaseVAE):
    """Lightning training plan of the scVI-style baseline.

    The biological categories are accepted (and stored) so both models encode the same
    data the same way, but this model does not use them.

    Args:
        n_genes: Number of genes.
        bio_categories: ``{obs key: [categories]}`` of the biological covariates (unused).
        tech_categories: ``{obs key: [categories]}`` of the technical covariates.
        n_latent: Latent dimensions.
        n_hidden: Hidden width.
        n_layers: Hidden layers of encoder and decoder.
        dropout: Encoder dropout rate.
        batch_norm: Batch norm: bool or ``"both"``/``"encoder"``/``"decoder"``/``"none"``.
        layer_norm: Layer norm, same choices.
        activation: Activation name.
        encode_covariates: Give the encoder the technical covariates.
        deeply_inject_covariates: Covariates into every hidden layer.
        beta_max: Final KL weight.
        kl_warmup_epochs: Epochs of the linear KL warm-up from 0 to ``beta_max``.
        learning_rate: Optimiser learning rate.
        weight_decay: Optimiser weight decay.
        optimizer: ``"adam"`` or ``"adamw"``.
    """

    registry_name: ClassVar[str] = "scvi_vae"
    uses_bio_covariates: ClassVar[bool] = False
    module: SCVIVAEModule

    def __init__(
        self,
        n_genes: int,
        *,
        bio_categories: dict[str, list[str]] | None = None,
        tech_categories: dict[str, list[str]] | None = None,
        n_latent: int = 10,
        n_hidden: int = 128,
        n_layers: int = 1,
        dropout: float = 0.1,
        batch_norm: bool | NormPlacement = "both",
        layer_norm: bool | NormPlacement = "none",
        activation: str = "relu",
        encode_covariates: bool = False,
        deeply_inject_covariates: bool = True,
        beta_max: float = 1.0,
        kl_warmup_epochs: int = 10,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-6,
        optimizer: OptimizerName = "adam",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.module = SCVIVAEModule(
            n_genes,
            CovariateEncoder.from_dict(tech_categories or {}).n_columns,
            n_latent=n_latent,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout=dropout,
            batch_norm=batch_norm,
            layer_norm=layer_norm,
            activation=activation,
            encode_covariates=encode_covariates,
            deeply_inject_covariates=deeply_inject_covariates,
        )
