"""The joint VAE of paired two-platform data: the Lightning training plan (``joint_vae``).

The networks and the loss live in ``joint_modules.JointVAEModule``; this class owns the
hyperparameters and per-epoch metrics (from ``BaseVAE``) and the user-facing
``get_latent`` and ``impute`` on paired data (``PairedTensors`` or the AnnData written by
the paired_processing pipeline). It trains like the single-cell models, through
``models.trainer.fit`` and its plan (KL warm-up included).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, ClassVar, Self

import numpy as np
import torch
from anndata import AnnData

from omics_vae.data.paired import PairedTensors, check_paired_anndata, platform_view
from omics_vae.models.base import BaseVAE, Batch
from omics_vae.models.joint_modules import JointVAEHyperparameters, JointVAEModule
from omics_vae.models.registry import register_model

# Hyperparameters the training node takes from the data, not from parameters.
DATA_HYPERPARAMETERS = ("n_features_a", "n_features_b", "platform_a", "platform_b")


@register_model
class JointVAE(BaseVAE):
    """Lightning training plan of the joint VAE.

    Logged once per epoch, as ``train/<name>`` and ``val/<name>``: ``loss``,
    ``reconstruction`` (self, both platforms), ``kl``, ``self_a``, ``self_b``,
    ``cross_ab`` (A -> B), ``cross_ba``, ``joint_reconstruction``, ``kl_joint`` and
    ``alignment``; and ``kl_weight``. Beta is ``kl_weight`` (the plan's warm-up to
    ``beta_max``); the other loss weights are ``module.loss_weights``
    (``JointVAEHyperparameters.loss_weights``), which training phases may override.

    Args:
        n_features_a: Features of platform A.
        n_features_b: Features of platform B.
        platform_a: Name of platform A (e.g. ``rna``).
        platform_b: Name of platform B (e.g. ``protein``).
        **hyperparameters: Fields of ``JointVAEHyperparameters`` (its defaults for the
            rest).
    """

    registry_name: ClassVar[str] = "joint_vae"
    corrected_latent: ClassVar[str] = "z_joint"
    uses_bio_covariates: ClassVar[bool] = False
    data_kind: ClassVar[str] = "paired"
    data_hyperparameters: ClassVar[frozenset[str]] = frozenset(DATA_HYPERPARAMETERS)
    hyperparameter_class: ClassVar[type[JointVAEHyperparameters]] = JointVAEHyperparameters
    module: JointVAEModule

    def __init__(
        self,
        n_features_a: int,
        n_features_b: int,
        *,
        platform_a: str = "a",
        platform_b: str = "b",
        **hyperparameters: Any,
    ) -> None:
        data = {
            "n_features_a": n_features_a,
            "n_features_b": n_features_b,
            "platform_a": platform_a,
            "platform_b": platform_b,
        }
        super().__init__(data, hyperparameters)

    def build_module(self, hyperparameters: JointVAEHyperparameters) -> JointVAEModule:
        """Both platforms' encoders and decoders for this model's feature counts."""
        return JointVAEModule(self.hparams.n_features_a, self.hparams.n_features_b, hyperparameters)

    # ---- data ------------------------------------------------------------------------

    @classmethod
    def from_anndata(
        cls, adata: AnnData, params: Mapping[str, Any] | None = None, **overrides: Any
    ) -> Self:
        """Build a model for paired_processing output from a flat parameter dict.

        Raises:
            TypeError: A parameter is not a hyperparameter; the message lists the valid ones.
        """
        check_paired_anndata(adata, "model input")
        values = {**(params or {}), **overrides}
        valid = set(cls.hyperparameter_names()) - set(DATA_HYPERPARAMETERS)
        unknown = sorted(set(values) - valid)
        if unknown:
            raise TypeError(
                f"{cls.__name__} has no hyperparameter(s) {unknown}; valid: {sorted(valid)}"
            )
        view_a, view_b = platform_view(adata, "a"), platform_view(adata, "b")
        return cls(
            n_features_a=view_a.n_vars,
            n_features_b=view_b.n_vars,
            platform_a=str(view_a.var["platform"].iloc[0]),
            platform_b=str(view_b.var["platform"].iloc[0]),
            **values,
        )

    @classmethod
    def probe(cls, **hyperparameters: Any) -> Self:
        """A tiny instance (two features per platform), to know parts and loss weights."""
        return cls(n_features_a=2, n_features_b=2, **hyperparameters)

    def make_tensors(
        self, adata: AnnData, counts_layer: str | None = None, device: str | torch.device = "cpu"
    ) -> PairedTensors:
        """Scaled values of both platforms as tensors (``counts_layer`` is unused)."""
        tensors = PairedTensors.from_anndata(adata, device=device)
        expected = (self.hparams.n_features_a, self.hparams.n_features_b)
        found = (tensors.x_a.shape[1], tensors.x_b.shape[1])
        if found != expected:
            raise ValueError(
                f"the data have {found} features on platforms (a, b), the model was trained "
                f"on {expected}; embed data processed like the training data."
            )
        return tensors

    # ---- inference -------------------------------------------------------------------

    @torch.inference_mode()
    def get_latent(
        self, data: PairedTensors | AnnData, batch_size: int = 1024, counts_layer: Any = None
    ) -> dict[str, np.ndarray]:
        """Posterior means ``z_a`` (from A), ``z_b`` (from B) and ``z_joint`` per sample."""
        chunks: dict[str, list[np.ndarray]] = {key: [] for key in self.module.latent_keys}
        for batch in self._batches(data, batch_size):
            latent = self.module.latent(self.module.inference(batch, sample=False))
            for key, value in latent.items():
                chunks[key].append(value.float().cpu().numpy())
        return {key: np.concatenate(parts) for key, parts in chunks.items()}

    @torch.inference_mode()
    def impute(
        self, data: PairedTensors | AnnData, batch_size: int = 1024
    ) -> dict[str, np.ndarray]:
        """Decoded means in the scaled space: ``b_from_a``, ``a_from_b``, ``a_from_a``, ...

        Each platform is imputed from the other's posterior mean only: the imputation of
        B never sees B.
        """
        keys = ("a_from_a", "b_from_a", "a_from_b", "b_from_b", "a_from_j", "b_from_j")
        chunks: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        for batch in self._batches(data, batch_size):
            out = self.module.inference(batch, sample=False)
            decoded = self.module.generative(**self.module.generative_inputs(batch, out))
            for key in keys:
                chunks[key].append(decoded[key][0].float().cpu().numpy())
        return {key: np.concatenate(parts) for key, parts in chunks.items()}

    @torch.inference_mode()
    def reconstruction_error(
        self, data: PairedTensors | AnnData, batch_size: int = 1024, counts_layer: Any = None
    ) -> np.ndarray:
        """Self-reconstruction NLL of both platforms per sample, at the posterior means."""
        parts = []
        for batch in self._batches(data, batch_size):
            out = self.module.inference(batch, sample=False)
            decoded = self.module.generative(**self.module.generative_inputs(batch, out))
            nll = -(
                self.module.log_likelihood(batch["x_a"], decoded["a_from_a"], "a")
                + self.module.log_likelihood(batch["x_b"], decoded["b_from_b"], "b")
            )
            parts.append(nll[0].double().cpu().numpy())
        return np.concatenate(parts)

    def _batches(self, data: PairedTensors | AnnData, batch_size: int) -> Iterator[Batch]:
        tensors = data if isinstance(data, PairedTensors) else self.make_tensors(data)
        was_training = self.training
        self.eval()
        try:
            for start in range(0, tensors.n_obs, batch_size):
                batch = tensors.slice(start, min(start + batch_size, tensors.n_obs))
                yield {key: value.to(self.device) for key, value in batch.items()}
        finally:
            self.train(was_training)
