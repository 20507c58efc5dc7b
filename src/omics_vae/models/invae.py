"""inVAE: a VAE with an invariant (biological) and a spurious (technical) latent space.

Aliee et al., "Conditionally invariant representation learning for disentangling
cellular heterogeneity" (reference implementation: theislab/inVAE). The latent
``z = [z_i, z_s]`` has a conditional prior: ``z_i ~ N(m(bio), v(bio))`` and
``z_s ~ N(m(tech), v(tech))``, with ``v`` (and optionally ``m``) small MLPs of the one-hot
covariates. The encoder sees the counts and both covariate sets; the negative binomial
decoder sees only ``z``, so batch effects must be explained by ``z_s``.
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
from omics_vae.models.components import (
    ConditionalGaussianPrior,
    GaussianEncoder,
    GeneDispersion,
    HiddenLayers,
    NBDecoder,
)
from omics_vae.models.distributions import gaussian_kl, minibatch_total_correlation
from omics_vae.models.hyperparameters import InVAEHyperparameters
from omics_vae.models.registry import register_model


class InVAEModule(VAEModule):
    """The inVAE networks and loss.

    Args:
        n_genes: Number of genes.
        n_bio: Width of the one-hot biological covariates (0: ``z_i ~ N(0, I)``).
        n_tech: Width of the one-hot technical covariates (0: ``z_s ~ N(0, I)``).
        hyperparameters: The architecture and loss settings (``InVAEHyperparameters``).
    """

    latent_keys: ClassVar[tuple[str, ...]] = ("z_i", "z_s", "z")
    logged_terms: ClassVar[tuple[str, ...]] = (
        *VAEModule.logged_terms,
        "kl_bio",
        "kl_tech",
        "tc",
    )
    # `generative` takes the draw, the log library sizes and both covariate sets.
    generative_batch_keys: ClassVar[tuple[str, ...]] = ("log_library", "bio", "tech")

    def __init__(
        self, n_genes: int, n_bio: int, n_tech: int, hyperparameters: InVAEHyperparameters
    ) -> None:
        super().__init__()
        hp = hyperparameters
        if hp.n_latent_bio < 1 or hp.n_latent_tech < 0:
            raise ValueError(
                f"need n_latent_bio >= 1 and n_latent_tech >= 0, got {hp.n_latent_bio}, "
                f"{hp.n_latent_tech}"
            )
        self.n_latent_bio = hp.n_latent_bio
        self.n_latent_tech = hp.n_latent_tech
        self.loss_weights["tc_weight"] = float(hp.tc_weight)
        # Training-set size for the total-correlation estimate; set by the training plan.
        self.dataset_size: int | None = None
        n_latent = hp.n_latent_bio + hp.n_latent_tech
        self.encoder = GaussianEncoder(
            n_genes,
            n_latent,
            hp.encoder_layers(),
            n_covariates=n_bio + n_tech,
            inject_covariates=False,
        )
        self.decoder = NBDecoder(n_latent, n_genes, hp.decoder_layers())
        self.dispersion = GeneDispersion(n_genes)
        # The priors' MLPs: `prior_n_layers` linear maps, so one fewer hidden layer.
        maps = hp.prior_n_layers or hp.n_layers
        prior_layers = (
            HiddenLayers(
                n_hidden=hp.prior_n_hidden or hp.n_hidden,
                n_layers=maps - 1,
                batch_norm=False,
                activation=hp.activation,
                dropout=0.0,
            )
            if maps > 1
            else None
        )
        self.prior_bio = ConditionalGaussianPrior(
            n_bio, hp.n_latent_bio, prior_layers, learn_mean=hp.learn_prior_mean
        )
        self.prior_tech = ConditionalGaussianPrior(
            n_tech, hp.n_latent_tech, prior_layers, learn_mean=hp.learn_prior_mean
        )

    @property
    def tc_weight(self) -> float:
        """Weight of the total-correlation penalty (``loss_weights["tc_weight"]``)."""
        return self.loss_weights["tc_weight"]

    def inference(self, batch: Batch, sample: bool = True) -> dict[str, torch.Tensor]:
        """Encode ``log1p(counts)`` with both covariate sets: ``qz_mean``, ``qz_var`` and
        ``z`` (``GaussianEncoder.posterior``), ``n_latent_bio + n_latent_tech`` wide."""
        covariates = torch.cat((batch["bio"], batch["tech"]), dim=-1)
        return self.encoder.posterior(
            torch.log1p(batch["counts"]), covariates if covariates.shape[1] else None, sample
        )

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
        """``mean(-log p(x|z) + kl_weight * (KL_i + KL_s)) + tc_weight * TC`` (arguments:
        ``VAEModule.loss``); ``extra`` has ``kl_bio``, ``kl_tech`` and, when penalised,
        ``tc``."""
        reconstruction = self.mean_reconstruction_nll(batch, generative_outputs)
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
class InVAE(SingleCellVAE):
    """Lightning training plan of inVAE; its hyperparameters: ``InVAEHyperparameters``."""

    registry_name: ClassVar[str] = "invae"
    corrected_latent: ClassVar[str] = "z_i"
    technical_latent: ClassVar[str | None] = "z_s"
    hyperparameter_class: ClassVar[type[InVAEHyperparameters]] = InVAEHyperparameters
    module: InVAEModule

    def build_module(self, hyperparameters: InVAEHyperparameters) -> InVAEModule:
        """inVAE's networks for this model's genes and covariates."""
        encoders = self.encoders
        return InVAEModule(
            self.hparams.n_genes,
            encoders["bio"].n_columns,
            encoders["tech"].n_columns,
            hyperparameters,
        )

    def on_train_start(self) -> None:
        loader = self.trainer.train_dataloader
        self.module.dataset_size = getattr(loader, "n_obs", None)
