"""The joint VAE's torch module: two encoders, two decoders, one shared latent.

Each platform has a Gaussian encoder ``q(z | x_a)``, ``q(z | x_b)`` and a decoder
``p(x_a | z)``, ``p(x_b | z)``; the joint posterior is the product of the two experts.
The loss, for a batch of paired samples, is

    w_a * NLL(x_a | z_a) + w_b * NLL(x_b | z_b)                 self-reconstruction
  + w_cross * (NLL(x_b | z_a) + NLL(x_a | z_b))                 cross-reconstruction
  + w_joint * (w_a * NLL(x_a | z_ab) + w_b * NLL(x_b | z_ab))   joint reconstruction
  + beta * (KL_a + KL_b + w_joint * KL_ab)                      prior
  + w_align * D(q(z | x_a), q(z | x_b))                         latent alignment

with ``D`` the distance of the posterior means or an MMD between latent draws. The prior
is a standard normal or a VampPrior (a mixture of the encoders' posteriors at learned
pseudo-inputs). With ``iwae_samples > 1`` each encoder's terms are combined into an
importance-weighted bound over that many draws (Burda et al. 2016) instead of one draw.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from omics_vae.models.base import Batch, LossOutput, VAEModule
from omics_vae.models.components import MLP, GaussianEncoder, HiddenLayers, linear
from omics_vae.models.distributions import gaussian_kl, gaussian_mmd
from omics_vae.models.hyperparameters import JointVAEHyperparameters

_LOG_2PI = math.log(2 * math.pi)


class FeatureDecoder(nn.Module):
    """Latent -> per-feature Gaussian mean, with a learned per-feature variance.

    Args:
        n_latent: Latent width.
        n_features: Output features.
        layers: The hidden layers.
    """

    def __init__(self, n_latent: int, n_features: int, layers: HiddenLayers) -> None:
        super().__init__()
        self.hidden = MLP(n_latent, layers.n_hidden, layers)
        self.mean = linear(layers.n_hidden, n_features)
        self.log_var = nn.Parameter(torch.zeros(n_features))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(..., n_latent)`` latents -> ``(..., n_features)`` means."""
        shape = z.shape[:-1]
        return self.mean(self.hidden(z.reshape(-1, z.shape[-1]))).reshape(*shape, -1)


class VampPrior(nn.Module):
    """A mixture of the encoders' posteriors at learned pseudo-inputs of both platforms.

    Args:
        n_components: Pseudo-inputs per platform.
        n_features_a: Width of platform A.
        n_features_b: Width of platform B.
    """

    def __init__(self, n_components: int, n_features_a: int, n_features_b: int) -> None:
        super().__init__()
        # Scaled data are roughly standard normal per feature; start the pseudo-inputs there.
        self.pseudo_a = nn.Parameter(torch.randn(n_components, n_features_a) * 0.5)
        self.pseudo_b = nn.Parameter(torch.randn(n_components, n_features_b) * 0.5)

    def log_density(
        self, z: torch.Tensor, encoder_a: GaussianEncoder, encoder_b: GaussianEncoder
    ) -> torch.Tensor:
        """``log p(z)`` of ``(..., d)`` latents under the mixture, summed over dimensions."""
        mean_a, var_a = encoder_a(self.pseudo_a)
        mean_b, var_b = encoder_b(self.pseudo_b)
        means = torch.cat((mean_a, mean_b))  # (C, d)
        variances = torch.cat((var_a, var_b))
        diff = z.unsqueeze(-2) - means  # (..., C, d)
        log_components = -0.5 * (diff.pow(2) / variances + variances.log() + _LOG_2PI).sum(-1)
        return torch.logsumexp(log_components, dim=-1) - math.log(means.shape[0])


class JointVAEModule(VAEModule):
    """Networks and loss of the joint VAE (see the module docstring).

    Args:
        n_features_a: Features of platform A.
        n_features_b: Features of platform B.
        hyperparameters: The architecture and loss settings (``JointVAEHyperparameters``).
    """

    latent_keys: ClassVar[tuple[str, ...]] = ("z_a", "z_b", "z_joint")
    logged_terms: ClassVar[tuple[str, ...]] = (
        "loss",
        "reconstruction",
        "kl",
        "self_a",
        "self_b",
        "cross_ab",
        "cross_ba",
        "joint_reconstruction",
        "kl_joint",
        "alignment",
    )

    def __init__(
        self, n_features_a: int, n_features_b: int, hyperparameters: JointVAEHyperparameters
    ) -> None:
        super().__init__()
        hp = hyperparameters
        if hp.likelihood not in ("gaussian", "mse"):
            raise ValueError(f"likelihood must be 'gaussian' or 'mse', got {hp.likelihood!r}")
        if hp.prior not in ("standard", "vamp"):
            raise ValueError(f"prior must be 'standard' or 'vamp', got {hp.prior!r}")
        if hp.alignment not in ("mean_distance", "mmd", "none"):
            raise ValueError(
                f"alignment must be 'mean_distance', 'mmd' or 'none', got {hp.alignment!r}"
            )
        if hp.iwae_samples < 1:
            raise ValueError(f"iwae_samples must be at least 1, got {hp.iwae_samples}")
        self.likelihood = hp.likelihood
        self.prior_name = hp.prior
        self.iwae_samples = hp.iwae_samples
        self.alignment = hp.alignment
        self.input_noise = hp.input_noise
        self.loss_weights = hp.loss_weights()
        encoder_layers, decoder_layers = hp.encoder_layers(), hp.decoder_layers(hp.decoder_dropout)
        self.encoder_a = GaussianEncoder(n_features_a, hp.n_latent, encoder_layers)
        self.encoder_b = GaussianEncoder(n_features_b, hp.n_latent, encoder_layers)
        self.decoder_a = FeatureDecoder(hp.n_latent, n_features_a, decoder_layers)
        self.decoder_b = FeatureDecoder(hp.n_latent, n_features_b, decoder_layers)
        self.prior = (
            VampPrior(hp.n_pseudo_inputs, n_features_a, n_features_b)
            if hp.prior == "vamp"
            else nn.Module()
        )

    # ---- inference -> generative -> loss ---------------------------------------------

    def inference(self, batch: Batch, sample: bool = True) -> dict[str, torch.Tensor]:
        """Both posteriors, their product, and draws ``(k, b, d)`` from each.

        Args:
            batch: ``{"x_a": (b, n_a), "x_b": (b, n_b)}`` scaled values.
            sample: Draw ``iwae_samples`` latents by reparameterisation; else ``k = 1`` and
                the draws are the posterior means.
        """
        x_a, x_b = batch["x_a"], batch["x_b"]
        if self.training and self.input_noise > 0:
            x_a = x_a + self.input_noise * torch.randn_like(x_a)
            x_b = x_b + self.input_noise * torch.randn_like(x_b)
        mean_a, var_a = self.encoder_a(x_a)
        mean_b, var_b = self.encoder_b(x_b)
        precision = 1 / var_a + 1 / var_b
        var_joint = 1 / precision
        mean_joint = var_joint * (mean_a / var_a + mean_b / var_b)
        outputs = {
            "qa_mean": mean_a,
            "qa_var": var_a,
            "qb_mean": mean_b,
            "qb_var": var_b,
            "qj_mean": mean_joint,
            "qj_var": var_joint,
        }
        k = self.iwae_samples if sample else 1
        for source in ("a", "b", "j"):
            mean, var = outputs[f"q{source}_mean"], outputs[f"q{source}_var"]
            if sample:
                noise = torch.randn((k, *mean.shape), device=mean.device, dtype=mean.dtype)
                outputs[f"z_{source}"] = mean + var.sqrt() * noise
            else:
                outputs[f"z_{source}"] = mean.unsqueeze(0)
        return outputs

    def generative_inputs(
        self, batch: Batch, inference_outputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return {f"z_{s}": inference_outputs[f"z_{s}"] for s in ("a", "b", "j")}

    def generative(
        self, z_a: torch.Tensor, z_b: torch.Tensor, z_j: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Decoded means ``<target>_from_<source>`` of shape ``(k, b, n_target)``."""
        return {
            "a_from_a": self.decoder_a(z_a),
            "b_from_a": self.decoder_b(z_a),
            "a_from_b": self.decoder_a(z_b),
            "b_from_b": self.decoder_b(z_b),
            "a_from_j": self.decoder_a(z_j),
            "b_from_j": self.decoder_b(z_j),
        }

    def log_likelihood(self, x: torch.Tensor, mean: torch.Tensor, role: str) -> torch.Tensor:
        """``log p(x | z)`` summed over features, ``(k, b)``."""
        if self.likelihood == "mse":
            return -0.5 * (x - mean).pow(2).sum(-1)
        decoder = self.decoder_a if role == "a" else self.decoder_b
        log_var = decoder.log_var.clamp(-7.0, 7.0)
        return -0.5 * ((x - mean).pow(2) / log_var.exp() + log_var + _LOG_2PI).sum(-1)

    def loss(
        self,
        batch: Batch,
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
        kl_weight: float = 1.0,
    ) -> LossOutput:
        """The weighted loss of the module docstring; ``kl_weight`` is beta.

        ``LossOutput.reconstruction`` is the self-reconstruction NLL of both platforms,
        ``kl`` the KL of both single-platform posteriors; ``extra`` holds each part.
        """
        w = self.loss_weights
        x_a, x_b = batch["x_a"], batch["x_b"]
        out, gen = inference_outputs, generative_outputs
        ll = {
            "self_a": self.log_likelihood(x_a, gen["a_from_a"], "a"),
            "self_b": self.log_likelihood(x_b, gen["b_from_b"], "b"),
            "cross_ab": self.log_likelihood(x_b, gen["b_from_a"], "b"),
            "cross_ba": self.log_likelihood(x_a, gen["a_from_b"], "a"),
            "joint_a": self.log_likelihood(x_a, gen["a_from_j"], "a"),
            "joint_b": self.log_likelihood(x_b, gen["b_from_j"], "b"),
        }
        log_ratio = {s: self._log_prior_ratio(out, s) for s in ("a", "b", "j")}
        w_a, w_b = w["self_reconstruction_a"], w["self_reconstruction_b"]
        per_source = {
            "a": w_a * ll["self_a"] + w["cross_reconstruction"] * ll["cross_ab"],
            "b": w_b * ll["self_b"] + w["cross_reconstruction"] * ll["cross_ba"],
            "j": w_a * ll["joint_a"] + w_b * ll["joint_b"],
        }
        bounds = {s: self._bound(per_source[s] + kl_weight * log_ratio[s]) for s in ("a", "b", "j")}
        alignment = self._alignment(out)
        loss = -(bounds["a"] + bounds["b"] + w["joint_reconstruction"] * bounds["j"])
        loss = loss + w["alignment"] * alignment

        nll = {name: -value.mean() for name, value in ll.items()}
        kl = {s: -log_ratio[s].mean() for s in ("a", "b", "j")}
        extra = {
            "self_a": nll["self_a"],
            "self_b": nll["self_b"],
            "cross_ab": nll["cross_ab"],
            "cross_ba": nll["cross_ba"],
            "joint_reconstruction": nll["joint_a"] + nll["joint_b"],
            "kl_joint": kl["j"],
            "alignment": alignment,
        }
        return LossOutput(loss, nll["self_a"] + nll["self_b"], kl["a"] + kl["b"], extra)

    def _log_prior_ratio(self, out: dict[str, torch.Tensor], source: str) -> torch.Tensor:
        """``log p(z) - log q(z | x)`` per draw ``(k, b)``; minus the analytic KL when exact."""
        mean, var, z = out[f"q{source}_mean"], out[f"q{source}_var"], out[f"z_{source}"]
        if self.prior_name == "standard" and z.shape[0] == 1:
            return -gaussian_kl(mean, var).unsqueeze(0)
        log_q = -0.5 * ((z - mean).pow(2) / var + var.log() + _LOG_2PI).sum(-1)
        if self.prior_name == "vamp":
            log_p = self.prior.log_density(z, self.encoder_a, self.encoder_b)
        else:
            log_p = -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)
        return log_p - log_q

    @staticmethod
    def _bound(log_weights: torch.Tensor) -> torch.Tensor:
        """Mean over samples of the importance-weighted bound over the ``k`` draws."""
        k = log_weights.shape[0]
        if k == 1:
            return log_weights[0].mean()
        return (torch.logsumexp(log_weights, dim=0) - math.log(k)).mean()

    def _alignment(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.alignment == "mean_distance":
            return (out["qa_mean"] - out["qb_mean"]).pow(2).sum(-1).mean()
        if self.alignment == "mmd":
            return gaussian_mmd(out["z_a"][0], out["z_b"][0])
        return out["qa_mean"].new_zeros(())

    def latent(self, inference_outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Posterior means: from A, from B, and joint."""
        return {
            "z_a": inference_outputs["qa_mean"],
            "z_b": inference_outputs["qb_mean"],
            "z_joint": inference_outputs["qj_mean"],
        }

    def named_parts(self) -> dict[str, nn.Module]:
        """``encoder_a``, ``encoder_b``, ``decoder_a``, ``decoder_b`` and ``prior``."""
        return {
            "encoder_a": self.encoder_a,
            "encoder_b": self.encoder_b,
            "decoder_a": self.decoder_a,
            "decoder_b": self.decoder_b,
            "prior": self.prior,
        }
