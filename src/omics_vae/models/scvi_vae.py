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

from omics_vae.models.base import (
    Batch,
    LossOutput,
    SingleCellVAE,
    VAEModule,
)
from omics_vae.models.components import GaussianEncoder, GeneDispersion, NBDecoder
from omics_vae.models.distributions import gaussian_kl
from omics_vae.models.hyperparameters import SCVIVAEHyperparameters
from omics_vae.models.registry import register_model


class SCVIVAEModule(VAEModule):
    """The scVI networks and loss.

    Args:
        n_genes: Number of genes.
        n_tech: Width of the one-hot technical covariates injected into the decoder.
        hyperparameters: The architecture settings (``SCVIVAEHyperparameters``); its
            ``batch_norm`` and ``layer_norm`` are scVI's ``use_batch_norm`` and
            ``use_layer_norm``.
    """

    latent_keys: ClassVar[tuple[str, ...]] = ("z",)
    # `generative` takes the draw, the log library sizes and the technical covariates.
    generative_batch_keys: ClassVar[tuple[str, ...]] = ("log_library", "tech")

    def __init__(self, n_genes: int, n_tech: int, hyperparameters: SCVIVAEHyperparameters) -> None:
        super().__init__()
        hp = hyperparameters
        self.encode_covariates = hp.encode_covariates
        self.encoder = GaussianEncoder(
            n_genes,
            hp.n_latent,
            hp.encoder_layers(),
            n_covariates=n_tech if hp.encode_covariates else 0,
            inject_covariates=hp.deeply_inject_covariates,
        )
        self.decoder = NBDecoder(
            hp.n_latent,
            n_genes,
            hp.decoder_layers(),
            n_covariates=n_tech,
            inject_covariates=hp.deeply_inject_covariates,
        )
        self.dispersion = GeneDispersion(n_genes)

    def inference(self, batch: Batch, sample: bool = True) -> dict[str, torch.Tensor]:
        """Encode ``log1p(counts)`` (and the technical covariates if configured):
        ``qz_mean``, ``qz_var`` and ``z`` (``GaussianEncoder.posterior``)."""
        tech = batch["tech"]
        covariates = tech if self.encode_covariates and tech.shape[1] else None
        return self.encoder.posterior(torch.log1p(batch["counts"]), covariates, sample)

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
        """``mean(-log p(x|z) + kl_weight * KL(q(z|x) || N(0, I)))`` (arguments:
        ``VAEModule.loss``)."""
        reconstruction = self.mean_reconstruction_nll(batch, generative_outputs)
        kl = gaussian_kl(inference_outputs["qz_mean"], inference_outputs["qz_var"]).mean()
        return LossOutput(reconstruction + kl_weight * kl, reconstruction, kl)

    def latent(self, inference_outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Posterior mean ``z``."""
        return {"z": inference_outputs["qz_mean"]}

    def named_parts(self) -> dict[str, nn.Module]:
        """``encoder``, ``decoder`` and ``dispersion``."""
        return {"encoder": self.encoder, "decoder": self.decoder, "dispersion": self.dispersion}


@register_model
class SCVIVAE(SingleCellVAE):
    """Lightning training plan of the scVI-style baseline; its hyperparameters:
    ``SCVIVAEHyperparameters``.

    The biological categories are accepted (and stored) so both models encode the same
    data the same way, but this model does not use them.
    """

    registry_name: ClassVar[str] = "scvi_vae"
    uses_bio_covariates: ClassVar[bool] = False
    hyperparameter_class: ClassVar[type[SCVIVAEHyperparameters]] = SCVIVAEHyperparameters
    module: SCVIVAEModule

    def build_module(self, hyperparameters: SCVIVAEHyperparameters) -> SCVIVAEModule:
        """scVI's networks for this model's genes and technical covariates."""
        return SCVIVAEModule(self.hparams.n_genes, self.encoders["tech"].n_columns, hyperparameters)
