"""inVAE: a VAE with an invariant (biological) and a spurious (technical) latent space.

Aliee et al., "Conditionally invariant representation learning for disentangling
cellular heterogeneity" (reference implementation: theislab/inVAE). The latent
``z = [z_i, z_s]`` has a conditional prior: ``z_i ~ N(m(bio), v(bio))`` and
``z_s ~ N(m(tech), v(tech))``, with ``v`` (and optionally ``m``) small MLPs of the one-hot
covariates. The encoder sees the counts and both covariate sets; the negative binomial
decoder sees only ``z``, so batch effects must be explained by ``z_s``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from omics_vae.data.tensors import CovariateEncoder
from omics_vae.models.base import BaseVAE, Batch, LossOutput, OptimizerName, VAEModule
from omics_vae.models.components import (
    ConditionalGaussianPrior,
    GaussianEncoder,
    GeneDispersion,
    NBDecoder,
    NormPlacement,
    norm_flags,
)
from omics_vae.models.distributions import gaussian_kl, minibatch_total_correlation
from omics_vae.models.registry import register_model


class InVAEModule(VAEModule):
    """The inVAE networks and loss.

    Args:
        n_genes: Number of genes.
        n_bio: Width of the one-hot biological covariates (0: ``z_i ~ N(0, I)``).
        n_tech: Width of the one-hot technical covariates (0: ``z_s ~ N(0, I)``).
        n_latent_bio: Dimensions of ``z_i``.
        n_latent_tech: Dimensions of ``z_s``.
        n_hidden: Hidden width of encoder and decoder.
        n_layers: Hidden layers of encoder and decoder.
        dropout: Dropout rate in the encoder.
        batch_norm: Batch norm placement (``True`` = both networks).
        layer_norm: Layer norm placement.
        activation: Activation name.
        learn_prior_mean: Learn the prior means too (else they are 0).
        prior_n_hidden: Hidden width of the prior MLPs (default ``n_hidden``).
        prior_n_layers: Linear maps of the prior MLPs (default ``n_layers``).
        tc_weight: Weight of the total-correlation penalty between ``z_i`` and ``z_s``.
    """

    latent_keys: ClassVar[tuple[str, ...]] = ("z_i", "z_s", "z")
    logged_terms: ClassVar[tuple[str, ...]] = (
        *VAEModule.logged_terms,
        "kl_bio",
        "kl_tech",
        "tc",
    )

    def __init__(
        self,
        n_genes: int,
        n_bio: int = 0,
        n_tech: int = 0,
        *,
        n_latent_bio: int = 30,
        n_latent_tech: int = 5,
        n_hidden: int = 128,
        n_layers: int = 2,
        dropout: float = 0.1,
        batch_norm: bool | NormPlacement = True,
        layer_norm: bool | NormPlacement = False,
        activation: str = "relu",
        learn_prior_mean: bool = True,
        prior_n_hidden: int | None = None,
        prior_n_layers: int | None = None,
        tc_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if n_latent_bio < 1 or n_latent_tech < 0:
            raise ValueError(
                f"need n_latent_bio >= 1 and n_latent_tech >= 0, got {n_latent_bio}, "
                f"{n_latent_tech}"
            )
        self.n_latent_bio = n_latent_bio
        self.n_latent_tech = n_latent_tech
        self.loss_weights["tc_weight"] = float(tc_weight)
        # Training-set size for the total-correlation estimate; set by the training plan.
        self.dataset_size: int | None = None
        bn_encoder, bn_decoder = norm_flags(batch_norm)
        ln_encoder, ln_decoder = norm_flags(layer_norm)
        self.encoder = GaussianEncoder(
            n_genes,
            n_latent_bio + n_latent_tech,
            n_hidden=n_hidden,
            n_layers=n_layers,
            n_covariates=n_bio + n_tech,
            inject_covariates=False,
            batch_norm=bn_encoder,
            layer_norm=ln_encoder,
            activation=activation,
            dropout=dropout,
        )
        self.decoder = NBDecoder(
            n_latent_bio + n_latent_tech,
            n_genes,
            n_hidden=n_hidden,
            n_layers=n_layers,
            batch_norm=bn_decoder,
            layer_norm=ln_decoder,
            activation=activation,
        )
        self.dispersion = GeneDispersion(n_genes)
        prior_kwargs: dict[str, Any] = {
            "n_hidden": prior_n_hidden or n_hidden,
            "n_layers": prior_n_layers or n_layers,
            "learn_mean": learn_prior_mean,
            "activation": activation,
        }
        self.prior_bio = ConditionalGaussianPrior(n_bio, n_latent_bio, **prior_kwargs)
        self.prior_tech = ConditionalGaussianPrior(n_tech, n_latent_tech, **prior_kwargs)

    @property
    def tc_weight(self) -> float:
        """Weight of the total-correlation penalty (``loss_weights["tc_weight"]``)."""
        return self.loss_weights["tc_weight"]

    def inference(self, batch: Batch, sample: bool = True) -> dict[str, torch.Tensor]:
        """Encode ``log1p(counts)`` with both covariate sets.

        Args:
            batch: A batch dict.
            sample: Draw ``z`` by reparameterisation; else ``z`` is the posterior mean.

        Returns:
            ``qz_mean``, ``qz_var`` and ``z``, each ``(b, n_latent_bio + n_latent_tech)``.
        """
        covariates = torch.cat((batch["bio"], batch["tech"]), dim=-1)
        mean, var = self.encoder(
            torch.log1p(batch["counts"]), covariates if covariates.shape[1] else None
        )
        z = mean + var.sqrt() * torch.randn_like(mean) if sample else mean
        return {"qz_mean": mean, "qz_var": var, "z": z}

    def generative_inputs(
        self, batch: Batch, inference_outputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """``z``, the log library sizes and both covariate sets."""
        return {
            "z": inference_outputs["z"],
            "log_library": batch["log_library"],
            "bio": batch["bio"],
            "tech": batch["tech"],
        }

    def generative(
        self,
        z: torch.Tensor,
        log_library: torch.Tensor,
        bio: torch.Tensor,
        tech: torch.Tensor,
    ) -> dict[str, torch.Tensor | None]:
        """Decoder log-means, dispersions and both conditional priors.

        Args:
            z: ``(b, n_latent)`` latents.
            log_library: ``(b, 1)`` log library sizes.
            bio: ``(b, n_bio)`` one-hot biological covariates.
            tech: ``(b, n_tech)`` one-hot technical covariates.

        Returns:
            ``px_logits`` ``(b, n_genes)`` (``log mu = log_softmax(px_logits) +
            log_library``), ``log_library``, ``log_theta`` ``(n_genes,)`` and
            ``prior_bio_mean``/``prior_bio_var``/``prior_tech_mean``/``prior_tech_var``
            (``None`` mean 0 / variance 1).
        """
        prior_bio_mean, prior_bio_var = self.prior_bio(bio)
        prior_tech_mean, prior_tech_var = self.prior_tech(tech)
        return {
            "px_logits": self.decoder(z),
            "log_library": log_library,
            "log_theta": self.dispersion(),
            "prior_bio_mean": prior_bio_mean,
            "prior_bio_var": prior_bio_var,
            "prior_tech_mean": prior_tech_mean,
            "prior_tech_var": prior_tech_var,
        }

    def loss(
        self,
        batch: Batch,
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor | None],
        kl_weight: float = 1.0,
    ) -> LossOutput:
        """``mean(-log p(x|z) + kl_weight * (KL_i + KL_s)) + tc_weight * TC``.

        Args:
            batch: The batch.
            inference_outputs: ``inference`` output.
            generative_outputs: ``generative`` output.
            kl_weight: Weight of the KL terms (the warm-up's current beta).

        Returns:
            The loss; ``extra`` has ``kl_bio``, ``kl_tech`` and, when penalised, ``tc``.
        """
        n_cells = batch["counts"].shape[0]
        reconstruction = (
            -self.reconstruction_log_likelihood(batch, generative_outputs, reduction="sum")
            / n_cells
        )
        mean, var = inference_outputs["qz_mean"], inference_outputs["qz_var"]
        mean_i, mean_s = self._split(mean)
        var_i, var_s = self._split(var)
        kl_bio = gaussian_kl(
            mean_i, var_i, generative_outputs["prior_bio_mean"], generative_outputs["prior_bio_var"]
        )
        kl_tech = gaussian_kl(
            mean_s,
            var_s,
            generative_outputs["prior_tech_mean"],
            generative_outputs["prior_tech_var"],
        )
        kl_bio, kl_tech = kl_bio.mean(), kl_tech.mean()
        kl = kl_bio + kl_tech
        loss = reconstruction + kl_weight * kl
        extra = {"kl_bio": kl_bio, "kl_tech": kl_tech}
        if self.tc_weight > 0 and self.n_latent_tech > 0:
            tc = minibatch_total_correlation(
                inference_outputs["z"],
                mean,
                var,
                [slice(0, self.n_latent_bio), slice(self.n_latent_bio, None)],
                self.dataset_size or mean.shape[0],
            )
            loss = loss + self.tc_weight * tc
            extra["tc"] = tc
        return LossOutput(loss, reconstruction, kl, extra)

    def _split(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return latent[:, : self.n_latent_bio], latent[:, self.n_latent_bio :]

    def latent(self, inference_outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Posterior means: ``z_i``, ``z_s`` and their concatenation ``z``."""
        mean = inference_outputs["qz_mean"]
        z_i, z_s = self._split(mean)
        return {"z_i": z_i, "z_s": z_s, "z": mean}

    def named_parts(self) -> dict[str, nn.Module]:
        """``encoder``, ``decoder``, ``dispersion``, ``prior_bio`` and ``prior_tech``."""
        return {
            "encoder": self.encoder,
            "decoder": self.decoder,
            "dispersion": self.dispersion,
            "prior_bio": self.prior_bio,
            "prior_tech": self.prior_tech,
        }


@register_model
class InVAE(BaseVAE):
    """Lightning training plan of inVAE.

    Hyperparameters (all JSON-serialisable, saved with ``save_hyperparameters()``):

    Args:
        n_genes: Number of genes.
        bio_categories: ``{obs key: [categories]}`` of the biological covariates.
        tech_categories: ``{obs key: [categories]}`` of the technical covariates.
        n_latent_bio: Dimensions of the invariant latent ``z_i``.
        n_latent_tech: Dimensions of the spurious latent ``z_s``.
        n_hidden: Hidden width.
        n_layers: Hidden layers of encoder and decoder.
        dropout: Encoder dropout rate.
        batch_norm: Batch norm: bool or ``"both"``/``"encoder"``/``"decoder"``/``"none"``.
        layer_norm: Layer norm, same choices.
        activation: Activation name.
        learn_prior_mean: Learn the conditional prior means (else 0).
        prior_n_hidden: Hidden width of the prior MLPs (default ``n_hidden``).
        prior_n_layers: Linear maps in the prior MLPs (default ``n_layers``).
        beta_max: Final KL weight.
        kl_warmup_epochs: Epochs of the linear KL warm-up from 0 to ``beta_max``.
        tc_weight: Weight of the total-correlation penalty (0 disables it).
        learning_rate: Optimiser learning rate.
        weight_decay: Optimiser weight decay.
        optimizer: ``"adam"`` or ``"adamw"``.
    """

    registry_name: ClassVar[str] = "invae"
    corrected_latent: ClassVar[str] = "z_i"
    technical_latent: ClassVar[str | None] = "z_s"
    module: InVAEModule

    def __init__(
        self,
        n_genes: int,
        *,
        bio_categories: dict[str, list[str]] | None = None,
        tech_categories: dict[str, list[str]] | None = None,
        n_latent_bio: int = 30,
        n_latent_tech: int = 5,
        n_hidden: int = 128,
        n_layers: int = 2,
        dropout: float = 0.1,
        batch_norm: bool | NormPlacement = True,
        layer_norm: bool | NormPlacement = False,
        activation: str = "relu",
        learn_prior_mean: bool = True,
        prior_n_hidden: int | None = None,
        prior_n_layers: int | None = None,
        beta_max: float = 1.0,
        kl_warmup_epochs: int = 10,
        tc_weight: float = 0.0,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-6,
        optimizer: OptimizerName = "adam",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.module = InVAEModule(
            n_genes,
            CovariateEncoder.from_dict(bio_categories or {}).n_columns,
            CovariateEncoder.from_dict(tech_categories or {}).n_columns,
            n_latent_bio=n_latent_bio,
            n_latent_tech=n_latent_tech,
            n_hidden=n_hidden,
            n_layers=n_layers,
            dropout=dropout,
            batch_norm=batch_norm,
            layer_norm=layer_norm,
            activation=activation,
            learn_prior_mean=learn_prior_mean,
            prior_n_hidden=prior_n_hidden,
            prior_n_layers=prior_n_layers,
            tc_weight=tc_weight,
        )

    def on_train_start(self) -> None:
        loader = self.trainer.train_dataloader
        self.module.dataset_size = getattr(loader, "n_obs", None)
