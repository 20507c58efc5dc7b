"""Each model's hyperparameters, declared once as a frozen dataclass (no torch here).

The parameter schemas, the configuration reference and the model registry's
declarations (``registry.ModelSpec``) read these without importing torch, so reading and
validating parameters stays fast; the LightningModules take them as keyword arguments
and their torch modules read them from the instance.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from omics_vae.models.components import HiddenLayers

OptimizerName = Literal["adam", "adamw"]
# Adam's epsilon in scvi-tools' training plan (torch's default is 1e-8), kept for equal
# optimisation at equal settings (the plain path and the phases' optimisers).
ADAM_EPS = 0.01
NormPlacement = Literal["both", "encoder", "decoder", "none"]
Likelihood = Literal["gaussian", "mse"]
PriorName = Literal["standard", "vamp"]
AlignmentName = Literal["mean_distance", "mmd", "none"]


def norm_flags(placement: bool | NormPlacement) -> tuple[bool, bool]:
    """``(in encoder, in decoder)`` from a bool or scvi-style placement string."""
    if isinstance(placement, bool):
        return placement, placement
    if placement not in ("both", "encoder", "decoder", "none"):
        raise ValueError(
            f"norm placement must be a bool or 'both', 'encoder', 'decoder', 'none'; "
            f"got {placement!r}"
        )
    return placement in ("both", "encoder"), placement in ("both", "decoder")


@dataclass(frozen=True, kw_only=True)
class Hyperparameters:
    """The hyperparameters every model has: its KL weight, the warm-up the training plan
    gives it, and the optimiser of a run without phases.

    Each model declares its hyperparameters once, as a subclass whose fields and
    defaults are the only place they are written (``BaseVAE.hyperparameter_class``): the
    LightningModule takes them as keyword arguments, its torch module reads them from the
    instance, and the parameter schema, the configuration reference and the model card
    derive from the fields (descriptions from ``Attributes`` below).

    Attributes:
        beta_max: The KL weight (beta): what the KL warm-up reaches, and the model's own
            value outside training.
        kl_warmup_epochs: Epochs over which the training plan raises beta linearly from 0
            to beta_max (models.phases.kl_warmup); 0: no warm-up.
        learning_rate: Learning rate of the optimiser (set from training.optimizer).
        weight_decay: Weight decay of the optimiser (set from training.optimizer).
        optimizer: adam or adamw (set from training.optimizer).
    """

    beta_max: float = 1.0
    kl_warmup_epochs: int = 10
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    optimizer: OptimizerName = "adam"

    # What a checkpoint written before a field existed meant by leaving it out: the
    # value that rebuilds the model it was, not today's default.
    earlier_values: ClassVar[Mapping[str, Any]] = {}

    @classmethod
    def of_checkpoint(cls, saved: Mapping[str, Any]) -> dict[str, Any]:
        """A checkpoint's saved values completed with ``earlier_values`` for the fields
        it predates."""
        return {**{k: v for k, v in cls.earlier_values.items() if k not in saved}, **saved}

    @classmethod
    def names(cls) -> list[str]:
        """The fields, the model's own first, then those it inherits (in declaration
        order within each class)."""

        def declared_by(name: str) -> int:
            # The index in the MRO of the most basic class that declares the field.
            return max(
                depth
                for depth, klass in enumerate(cls.__mro__)
                if name in inspect.get_annotations(klass)
            )

        return sorted((f.name for f in fields(cls)), key=declared_by)

    @classmethod
    def descriptions(cls) -> dict[str, str]:
        """Each field's description, from the ``Attributes`` sections of the docstrings."""
        found: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            name = None
            section = False
            for line in inspect.cleandoc(klass.__dict__.get("__doc__") or "").splitlines():
                if line.strip() == "Attributes:":
                    section = True
                elif section and line and not line.startswith(" "):
                    section = False
                elif section and (entry := _ATTRIBUTE.match(line)):
                    name = entry["name"]
                    found[name] = entry["text"]
                elif section and name and line.strip():
                    found[name] += " " + line.strip()
        return found


_ATTRIBUTE = re.compile(r"^ {4}(?P<name>\w+): (?P<text>.*)$")


@dataclass(frozen=True, kw_only=True)
class NetworkHyperparameters(Hyperparameters):
    """The shape of a model's encoder and decoder networks, and what every model has.

    Attributes:
        n_hidden: Hidden width of the encoder and decoder.
        n_layers: Hidden layers of the encoder and decoder.
        dropout: Dropout rate in the encoder.
        batch_norm: Batch norm: a bool (both networks) or both, encoder, decoder, none.
        layer_norm: Layer norm, the same choices.
        activation: Activation name (relu, leaky_relu, elu, gelu, silu, tanh).
    """

    n_hidden: int = 128
    n_layers: int = 2
    dropout: float = 0.1
    batch_norm: bool | NormPlacement = True
    layer_norm: bool | NormPlacement = False
    activation: str = "relu"

    def encoder_layers(self) -> HiddenLayers:
        """The encoder's hidden layers: normalised where placed, with ``dropout``."""
        return self._layers(0, self.dropout)

    def decoder_layers(self, dropout: float = 0.0) -> HiddenLayers:
        """The decoder's hidden layers: normalised where placed, with ``dropout``."""
        return self._layers(1, dropout)

    def _layers(self, network: int, dropout: float) -> HiddenLayers:
        # Imported here: this module is read without torch (the parameter schemas).
        from omics_vae.models.components import HiddenLayers  # noqa: PLC0415

        return HiddenLayers(
            n_hidden=self.n_hidden,
            n_layers=self.n_layers,
            batch_norm=norm_flags(self.batch_norm)[network],
            layer_norm=norm_flags(self.layer_norm)[network],
            activation=self.activation,
            dropout=dropout,
        )


@dataclass(frozen=True, kw_only=True)
class InVAEHyperparameters(NetworkHyperparameters):
    """inVAE's hyperparameters (``training.hyperparameters.invae``).

    Attributes:
        n_latent_bio: Dimensions of the invariant latent z_i, the batch-corrected
            embedding.
        n_latent_tech: Dimensions of the spurious latent z_s, the technical variation;
            null: 5 when the model is given a biological label, 0 without one (then
            nothing tells z_s from z_i apart, and the batch-conditioned decoder carries
            the technical variation instead).
        learn_prior_mean: Learn the conditional prior means too (else they are 0):
            cell-type-specific prior means are what make z_i batch-invariant.
        prior_n_hidden: Hidden width of the prior MLPs (null: n_hidden).
        prior_n_layers: Linear maps of the prior MLPs (null: n_layers).
        tc_weight: Weight of the total-correlation penalty between z_i and z_s (0
            disables it).
        decoder_covariates: Give the decoder the technical covariates too (scVI's
            batch-conditioned decoder), so batch effects need not pass through z: what
            removes a strong technology effect (docs/benchmarks.md).
        batch_mmd_weight: Weight of a maximum mean discrepancy penalty between the z_i of
            each batch and the rest of the minibatch (trVAE); 0 disables it.
        classifier_weight: Weight of the label classifier's cross-entropy on labelled
            cells (scANVI's classification ratio); the classifier q(label | z_i) also
            weighs the mixture prior of unlabelled cells and predicts every cell's label.
        encode_batch: Give the encoder the technical covariates (the reference inVAE's
            encoder reads them; scVI's does not by default).
        encode_labels: Give the encoder the biological label too, as the reference
            inVAE does (no classifier then, and every cell needs a label to be
            embedded); off, the encoder reads counts and batch only.
    """

    earlier_values: ClassVar[Mapping[str, Any]] = {
        "n_latent_tech": 5,
        "decoder_covariates": False,
        "batch_mmd_weight": 0.0,
        "classifier_weight": 0.0,
        "encode_labels": True,
    }

    def latent_tech(self, labelled: bool) -> int:
        """``n_latent_tech``, resolved for a model with (or without) a biological label."""
        if self.n_latent_tech is not None:
            return self.n_latent_tech
        return 5 if labelled else 0

    n_latent_bio: int = 30
    n_latent_tech: int | None = None
    learn_prior_mean: bool = True
    prior_n_hidden: int | None = None
    prior_n_layers: int | None = None
    tc_weight: float = 0.0
    decoder_covariates: bool = True
    batch_mmd_weight: float = 0.0
    classifier_weight: float = 50.0
    encode_batch: bool = True
    encode_labels: bool = False


@dataclass(frozen=True, kw_only=True)
class SCVIVAEHyperparameters(NetworkHyperparameters):
    """The scVI-style baseline's hyperparameters (``training.hyperparameters.scvi_vae``).

    Attributes:
        n_latent: Latent dimensions.
        encode_covariates: Give the encoder the technical covariates too.
        deeply_inject_covariates: Technical covariates into every hidden layer, not just
            the first.
        batch_norm: Batch norm, as scVI's use_batch_norm: both, encoder, decoder, none
            (or a bool for both networks).
        layer_norm: Layer norm, as scVI's use_layer_norm; the same choices.
    """

    n_latent: int = 30
    encode_covariates: bool = False
    deeply_inject_covariates: bool = True
    # scvi-tools' spelling of the shared defaults (True, False).
    batch_norm: bool | NormPlacement = "both"
    layer_norm: bool | NormPlacement = "none"


@dataclass(frozen=True, kw_only=True)
class JointVAEHyperparameters(NetworkHyperparameters):
    """The joint VAE's hyperparameters (``paired.training.hyperparameters``).

    Attributes:
        n_latent: Shared latent dimensions.
        n_hidden: Hidden width of the encoders and decoders; narrow, because 350
            training samples overfit 256 units (docs/benchmarks.md).
        n_layers: Hidden layers of the encoders and decoders.
        decoder_dropout: Dropout rate in the decoders.
        likelihood: gaussian (a learned variance per feature) or mse (unit variance).
        prior: standard (normal) or vamp (VampPrior).
        n_pseudo_inputs: VampPrior pseudo-inputs per platform.
        iwae_samples: Latent draws per sample; above 1, an importance-weighted bound.
        alignment: mean_distance, mmd or none.
        input_noise: Standard deviation of Gaussian noise added to the scaled inputs in
            training; it regularises the encoders on few samples (docs/benchmarks.md).
        self_weight_a: Weight of platform A's self-reconstruction.
        self_weight_b: Weight of platform B's self-reconstruction.
        cross_weight: Weight of the cross-reconstructions A -> B and B -> A.
        joint_weight: Weight of the joint posterior's reconstruction and KL.
        alignment_weight: Weight of the latent alignment.
    """

    n_latent: int = 20
    n_hidden: int = 64
    n_layers: int = 1
    decoder_dropout: float = 0.0
    likelihood: Likelihood = "gaussian"
    prior: PriorName = "standard"
    n_pseudo_inputs: int = 50
    iwae_samples: int = 1
    alignment: AlignmentName = "mean_distance"
    input_noise: float = 0.5
    self_weight_a: float = 1.0
    self_weight_b: float = 1.0
    cross_weight: float = 1.0
    joint_weight: float = 1.0
    alignment_weight: float = 1.0

    def loss_weights(self) -> dict[str, float]:
        """The loss weights besides beta (``kl_weight``), by the names the loss reads
        and a training phase may override (``BaseVAE.set_loss_weight_overrides``)."""
        return {
            "self_reconstruction_a": self.self_weight_a,
            "self_reconstruction_b": self.self_weight_b,
            "cross_reconstruction": self.cross_weight,
            "joint_reconstruction": self.joint_weight,
            "alignment": self.alignment_weight,
        }
