"""inVAE: a VAE with an invariant (biological) and a spurious (technical) latent space.

Aliee et al., "Conditionally invariant representation learning for disentangling
cellular heterogeneity" (reference implementation: theislab/inVAE). The latent
``z = [z_i, z_s]`` has a conditional prior: ``z_i ~ N(m(bio), v(bio))`` and
``z_s ~ N(m(tech), v(tech))``, with ``v`` (and optionally ``m``) small MLPs of the one-hot
covariates. The negative binomial decoder sees ``z`` and the batch (``decoder_covariates``,
as scVI's decoder), so a strong technology effect need not pass through ``z``. Without a
biological label ``z_s`` is left out by default, since nothing would tell it from ``z_i``.

Labels are optional, cell by cell (semi-supervised, as scANVI): the encoder sees the
counts and the technical covariates but never the biological label, so any cell can be
embedded. A classifier ``q(label | z_i)`` is trained on the labelled cells; for a cell
whose label is unknown (an all-zero block of the first biological key) the ``z_i`` prior
is the mixture of the label-conditioned priors weighted by the classifier.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from anndata import AnnData
from torch import nn

from omics_vae.data.tensors import CountsTensors
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
from omics_vae.models.distributions import (
    batch_mmd,
    gaussian_kl,
    minibatch_total_correlation,
)
from omics_vae.models.hyperparameters import InVAEHyperparameters
from omics_vae.models.registry import register_model


class InVAEModule(VAEModule):
    """The inVAE networks and loss.

    Args:
        n_genes: Number of genes.
        n_bio: Width of the one-hot biological covariates (0: ``z_i ~ N(0, I)``).
        n_tech: Width of the one-hot technical covariates (0: ``z_s ~ N(0, I)``).
        hyperparameters: The architecture and loss settings (``InVAEHyperparameters``).
        n_labels: Categories of the first biological key, the label the classifier
            predicts and unlabelled cells marginalise over (0: no classifier).
    """

    latent_keys: ClassVar[tuple[str, ...]] = ("z_i", "z_s", "z")
    logged_terms: ClassVar[tuple[str, ...]] = (
        *VAEModule.logged_terms,
        "kl_bio",
        "kl_tech",
        "tc",
        "classification",
        "batch_mmd",
    )
    # `generative` takes the draw, the log library sizes and both covariate sets.
    generative_batch_keys: ClassVar[tuple[str, ...]] = ("log_library", "bio", "tech")

    def __init__(
        self,
        n_genes: int,
        n_bio: int,
        n_tech: int,
        hyperparameters: InVAEHyperparameters,
        n_labels: int = 0,
    ) -> None:
        super().__init__()
        hp = hyperparameters
        labelled = n_bio > 0
        self.n_latent_bio = hp.n_latent_bio
        self.n_latent_tech = hp.latent_tech(labelled)
        if self.n_latent_bio < 1 or self.n_latent_tech < 0:
            raise ValueError(
                f"need n_latent_bio >= 1 and n_latent_tech >= 0, got {self.n_latent_bio}, "
                f"{self.n_latent_tech}"
            )
        self.loss_weights["tc_weight"] = float(hp.tc_weight)
        self.loss_weights["batch_mmd_weight"] = float(hp.batch_mmd_weight)
        self.loss_weights["classifier_weight"] = float(hp.classifier_weight)
        # Training-set size for the total-correlation estimate; set by the training plan.
        self.dataset_size: int | None = None
        self.encode_labels = hp.encode_labels
        self.encode_batch = hp.encode_batch
        self.n_labels = 0 if hp.encode_labels else n_labels
        n_latent = self.n_latent_bio + self.n_latent_tech
        self.encoder = GaussianEncoder(
            n_genes,
            n_latent,
            hp.encoder_layers(),
            n_covariates=(n_tech if hp.encode_batch else 0) + (n_bio if hp.encode_labels else 0),
            inject_covariates=False,
        )
        self.decoder_covariates = hp.decoder_covariates and n_tech > 0
        self.decoder = NBDecoder(
            n_latent,
            n_genes,
            hp.decoder_layers(),
            n_covariates=n_tech if self.decoder_covariates else 0,
        )
        self.dispersion = GeneDispersion(n_genes)
        # scANVI's classifier: one hidden layer on the z_i posterior mean.
        self.classifier = (
            nn.Sequential(
                nn.Linear(hp.n_latent_bio, hp.n_hidden),
                nn.ReLU(),
                nn.Dropout(hp.dropout),
                nn.Linear(hp.n_hidden, n_labels),
            )
            if self.n_labels > 1
            else None
        )
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
            n_tech, self.n_latent_tech, prior_layers, learn_mean=hp.learn_prior_mean
        )

    @property
    def tc_weight(self) -> float:
        """Weight of the total-correlation penalty (``loss_weights["tc_weight"]``)."""
        return self.loss_weights["tc_weight"]

    def inference(self, batch: Batch, sample: bool = True) -> dict[str, torch.Tensor]:
        """Encode ``log1p(counts)`` with the technical covariates (and the label only with
        ``encode_labels``): ``qz_mean``, ``qz_var`` and ``z``
        (``GaussianEncoder.posterior``), ``n_latent_bio + n_latent_tech`` wide."""
        covariates = batch["tech"] if self.encode_batch else batch["tech"][:, :0]
        if self.encode_labels:
            covariates = torch.cat((batch["bio"], covariates), dim=-1)
        return self.encoder.posterior(
            torch.log1p(batch["counts"]), covariates if covariates.shape[1] else None, sample
        )

    def classify(self, inference_outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``(b, n_labels)`` logits of ``q(label | z_i)`` at the posterior mean."""
        if self.classifier is None:
            raise ValueError("this model has no label classifier (fewer than two labels)")
        return self.classifier(self._split(inference_outputs["qz_mean"])[0])

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
            "px_logits": self.decoder(z, tech if self.decoder_covariates else None),
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
        """``mean(-log p(x|z) + kl_weight * (KL_i + KL_s)) + tc_weight * TC +
        classifier_weight * CE + batch_mmd_weight * MMD`` (arguments: ``VAEModule.loss``);
        ``extra`` has ``kl_bio``, ``kl_tech`` and each penalty in use.

        ``KL_i`` of an unlabelled cell is against the mixture prior
        (``_unlabelled_kl``); ``CE`` is the classifier's cross-entropy on the labelled
        cells of the batch.
        """
        reconstruction = self.mean_reconstruction_nll(batch, generative_outputs)
        mean, var = inference_outputs["qz_mean"], inference_outputs["qz_var"]
        mean_i, mean_s = self._split(mean)
        var_i, var_s = self._split(var)
        kl_bio = gaussian_kl(
            mean_i, var_i, generative_outputs["prior_bio_mean"], generative_outputs["prior_bio_var"]
        )
        extra: dict[str, torch.Tensor] = {}
        if self.classifier is not None:
            labels = batch["bio"][:, : self.n_labels]
            labelled = labels.sum(dim=-1) > 0
            logits = self.classify(inference_outputs)
            # One device sync per step for both branches (a GPU would wait twice).
            n_labelled = int(labelled.sum())
            if n_labelled < labelled.shape[0]:
                mixture_kl = self._unlabelled_kl(batch["bio"], mean_i, var_i, logits)
                kl_bio = torch.where(labelled, kl_bio, mixture_kl)
            if n_labelled:
                extra["classification"] = nn.functional.cross_entropy(
                    logits[labelled], labels[labelled].argmax(dim=-1)
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
        extra = {"kl_bio": kl_bio, "kl_tech": kl_tech, **extra}
        if "classification" in extra:
            loss = loss + self.loss_weights["classifier_weight"] * extra["classification"]
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
        if self.loss_weights["batch_mmd_weight"] > 0:
            extra["batch_mmd"] = batch_mmd(mean_i, batch["batch_index"])
            loss = loss + self.loss_weights["batch_mmd_weight"] * extra["batch_mmd"]
        return LossOutput(loss, reconstruction, kl, extra)

    def _unlabelled_kl(
        self,
        bio: torch.Tensor,
        mean_i: torch.Tensor,
        var_i: torch.Tensor,
        logits: torch.Tensor,
    ) -> torch.Tensor:
        """``sum_k q(k|x) KL(q(z_i|x) || p(z_i|k)) + KL(q(label|x) || uniform)`` per cell:
        the KL of ``z_i`` and the label to the mixture prior (scANVI's unlabelled ELBO).

        Each label ``k`` replaces the first key's all-zero block; the other keys keep
        their values.
        """
        n_cells, n_labels = bio.shape[0], self.n_labels
        candidates = bio.unsqueeze(0).repeat(n_labels, 1, 1)
        candidates[:, :, :n_labels] = torch.eye(n_labels, device=bio.device).unsqueeze(1)
        prior_mean, prior_var = self.prior_bio(candidates.reshape(n_labels * n_cells, -1))
        shape = (n_labels, n_cells, -1)
        kl_each = gaussian_kl(
            mean_i.unsqueeze(0),
            var_i.unsqueeze(0),
            None if prior_mean is None else prior_mean.reshape(shape),
            prior_var.reshape(shape),
        )  # (n_labels, n_cells)
        log_probabilities = torch.log_softmax(logits, dim=-1)
        probabilities = log_probabilities.exp()
        label_kl = (probabilities * (log_probabilities + math.log(n_labels))).sum(dim=-1)
        return (probabilities * kl_each.T).sum(dim=-1) + label_kl

    def _split(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return latent[:, : self.n_latent_bio], latent[:, self.n_latent_bio :]

    def latent(self, inference_outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Posterior means: ``z_i``, ``z_s`` and their concatenation ``z``."""
        mean = inference_outputs["qz_mean"]
        z_i, z_s = self._split(mean)
        return {"z_i": z_i, "z_s": z_s, "z": mean}

    def named_parts(self) -> dict[str, nn.Module]:
        """``encoder``, ``decoder``, ``dispersion``, ``prior_bio``, ``prior_tech`` and,
        with labels, ``classifier``."""
        parts = {
            "encoder": self.encoder,
            "decoder": self.decoder,
            "dispersion": self.dispersion,
            "prior_bio": self.prior_bio,
            "prior_tech": self.prior_tech,
        }
        if self.classifier is not None:
            parts["classifier"] = self.classifier
        return parts


@register_model
class InVAE(SingleCellVAE):
    """Lightning training plan of inVAE; its hyperparameters: ``InVAEHyperparameters``."""

    registry_name: ClassVar[str] = "invae"
    corrected_latent: ClassVar[str] = "z_i"
    hyperparameter_class: ClassVar[type[InVAEHyperparameters]] = InVAEHyperparameters
    module: InVAEModule

    def build_module(self, hyperparameters: InVAEHyperparameters) -> InVAEModule:
        """inVAE's networks for this model's genes and covariates."""
        encoders = self.encoders
        label_blocks = encoders["bio"].block_sizes
        return InVAEModule(
            self.hparams.n_genes,
            encoders["bio"].n_columns,
            encoders["tech"].n_columns,
            hyperparameters,
            n_labels=label_blocks[0] if label_blocks else 0,
        )

    @property
    def technical_latent(self) -> str | None:  # type: ignore[override]
        """``z_s``, when the model has one (``n_latent_tech`` > 0)."""
        return "z_s" if self.module.n_latent_tech > 0 else None

    @property
    def label_key(self) -> str | None:  # type: ignore[override]
        """The obs key whose labels the classifier predicts (the first biological key)."""
        keys = self.encoders["bio"].keys
        return keys[0] if keys and self.module.classifier is not None else None

    @torch.inference_mode()
    def predict_labels(
        self,
        data: CountsTensors | AnnData,
        batch_size: int = 1024,
        counts_layer: str | None = "counts",
    ) -> tuple[np.ndarray, np.ndarray]:
        """The classifier's label for every cell, from its counts alone.

        Args:
            data: Tensors, or an AnnData encoded with this model's categories (labels
                may be missing or unknown).
            batch_size: Cells per forward pass.
            counts_layer: Layer of raw counts when ``data`` is an AnnData.

        Returns:
            ``(labels, probabilities)``: ``(n_cells,)`` label strings and the
            ``(n_cells, n_labels)`` class probabilities, columns in the order of
            ``encoders["bio"].categories[label_key]``.

        Raises:
            ValueError: The model has no classifier (trained without labels).
        """
        if self.label_key is None:
            raise ValueError(f"{self.registry_name} was trained without labels to predict")
        parts = []
        for batch in self._eval_batches(data, batch_size, counts_layer, likelihood=False):
            logits = self.module.classify(self.module.inference(batch, sample=False))
            parts.append(torch.softmax(logits, dim=-1).float().cpu().numpy())
        probabilities = np.concatenate(parts)
        categories = np.asarray(self.encoders["bio"].categories[self.label_key], dtype=object)
        return categories[probabilities.argmax(axis=1)], probabilities

    def on_train_start(self) -> None:
        loader = self.trainer.train_dataloader
        self.module.dataset_size = getattr(loader, "n_obs", None)
