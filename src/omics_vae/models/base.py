"""What every model shares: the loss record, the torch-module contract, the Lightning plan.

Two layers, as in scvi-tools:

- ``VAEModule`` (a plain ``nn.Module``) holds the networks and the maths, split into
  ``inference(batch)`` -> ``generative(...)`` -> ``loss(...)``. It knows nothing of
  optimisers, epochs or logging.
- ``BaseVAE`` (a ``LightningModule``) wraps one ``VAEModule``: it owns the
  hyperparameters (``save_hyperparameters()``), the optimiser of plain Lightning use,
  per-epoch metrics, and the user-facing ``get_latent`` / ``reconstruction_error``.

Loss weights, the interface training phases (``models.phases``) rely on:

- ``kl_weight`` (beta) is passed to ``VAEModule.loss`` on every call; the model's own
  value is ``beta_max`` (``BaseVAE.kl_weight``). The KL warm-up is not the model's: it
  is a ramp of ``kl_weight`` in the training plan (``models.phases.kl_warmup``), which
  ``models.trainer.fit`` runs.
- Every other weight lives in the module's ``loss_weights`` dict (e.g. inVAE's
  ``tc_weight``, the joint VAE's reconstruction and alignment weights), which ``loss``
  reads on each call. The constructor fills it with the model's own values.
- ``BaseVAE.set_loss_weight_overrides({name: value})`` replaces any of these for a while
  (a phase does so once per epoch); an empty dict returns to the model's own values.
  ``BaseVAE.loss_weight_names()`` lists the names a phase may override.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Self

import lightning as L
import numpy as np
import scipy.sparse as sp
import torch
from anndata import AnnData
from torch import nn

from omics_vae.data.tensors import (
    CountsFormat,
    CountsTensors,
    CovariateEncoder,
)
from omics_vae.models.allocator import tune_cpu_allocator
from omics_vae.models.distributions import softmax_nb_log_likelihood
from omics_vae.models.hyperparameters import (  # noqa: F401  (re-exported)
    ADAM_EPS,
    Hyperparameters,
    NetworkHyperparameters,
    OptimizerName,
)

Batch = dict[str, torch.Tensor]

_FUSED_ADAM_DEVICES = ("cpu", "cuda")


@dataclass
class LossOutput:
    """What a module's ``loss`` returns.

    Attributes:
        loss: Scalar to minimise: ``reconstruction + kl_weight * kl`` (+ penalties).
        reconstruction: Mean over cells of ``-log p(x | z)`` summed over genes.
        kl: Mean over cells of the (unweighted) KL divergence(s), summed over latents.
        extra: Further scalar diagnostics (e.g. ``kl_bio``, ``kl_tech``, ``tc``).
    """

    loss: torch.Tensor
    reconstruction: torch.Tensor
    kl: torch.Tensor
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


class VAEModule(nn.Module):
    """Contract of the torch modules: inference -> generative -> loss.

    Subclasses set ``latent_keys`` (the names ``latent()`` returns) and implement
    ``inference``, ``generative``, ``loss``, ``latent`` and ``named_parts``; they name
    the batch tensors ``generative`` takes besides the draw ``z`` in
    ``generative_batch_keys`` (or override ``generative_inputs``). Batches are dicts with
    ``omics_vae.data.tensors.BATCH_KEYS``.

    ``loss_weights`` holds the weights of the loss terms other than the KL term, by name;
    ``loss`` reads them on each call, so a training phase can change them between epochs.
    ``logged_terms`` names the scalars ``loss`` reports (``loss``, ``reconstruction``,
    ``kl`` and the keys of ``LossOutput.extra``), each logged as ``train/<name>`` and
    ``val/<name>``.
    """

    latent_keys: ClassVar[tuple[str, ...]] = ("z",)
    logged_terms: ClassVar[tuple[str, ...]] = ("loss", "reconstruction", "kl")
    generative_batch_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.loss_weights: dict[str, float] = {}

    def inference(self, batch: Batch, sample: bool = True) -> dict[str, torch.Tensor]:
        """Posterior parameters and a latent draw (the mean when ``sample`` is False)."""
        raise NotImplementedError

    def generative_inputs(
        self, batch: Batch, inference_outputs: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Keyword arguments of ``generative``: the draw ``z`` and the batch's
        ``generative_batch_keys``."""
        return {
            "z": inference_outputs["z"],
            **{key: batch[key] for key in self.generative_batch_keys},
        }

    def generative(self, **inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        """Likelihood (and prior) parameters given latents."""
        raise NotImplementedError

    def loss(
        self,
        batch: Batch,
        inference_outputs: dict[str, torch.Tensor],
        generative_outputs: dict[str, torch.Tensor],
        kl_weight: float = 1.0,
    ) -> LossOutput:
        """The negative ELBO (and penalties) of a batch.

        Args:
            batch: The batch.
            inference_outputs: ``inference``'s output.
            generative_outputs: ``generative``'s output.
            kl_weight: Weight of the KL term(s): beta, which the training plan sets (its
                KL warm-up, or a phase's value).
        """
        raise NotImplementedError

    def latent(self, inference_outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Posterior means by name (``latent_keys``)."""
        raise NotImplementedError

    def named_parts(self) -> dict[str, nn.Module]:
        """The sub-networks by name, for freezing parts in a training phase."""
        raise NotImplementedError

    def forward(self, batch: Batch, kl_weight: float = 1.0, sample: bool = True) -> LossOutput:
        """Run inference, generative and loss on a batch."""
        inference_outputs = self.inference(batch, sample=sample)
        generative_outputs = self.generative(**self.generative_inputs(batch, inference_outputs))
        return self.loss(batch, inference_outputs, generative_outputs, kl_weight)

    @staticmethod
    def reconstruction_log_likelihood(
        batch: Batch,
        generative_outputs: dict[str, torch.Tensor],
        reduction: Literal["cell", "sum"] = "cell",
    ) -> torch.Tensor:
        """NB log-likelihood of the batch's counts under the generative outputs.

        Args:
            batch: The batch (``counts``, ``log_factorial``, ``count_keys`` if any).
            generative_outputs: ``px_logits``, ``log_library`` and ``log_theta``.
            reduction: ``"cell"``: ``(b,)`` per cell; ``"sum"``: the batch total, by a
                faster route (see ``softmax_nb_log_likelihood``).

        Returns:
            Log-likelihoods, summed over genes.
        """
        return softmax_nb_log_likelihood(
            batch["counts"],
            generative_outputs["px_logits"],
            generative_outputs["log_library"],
            generative_outputs["log_theta"],
            log_factorial=batch.get("log_factorial"),
            reduction=reduction,
            count_keys=batch.get("count_keys"),
        )

    @classmethod
    def mean_reconstruction_nll(
        cls, batch: Batch, generative_outputs: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """The loss's reconstruction term: the mean over the batch's cells of
        ``-log p(x | z)``, summed over genes (by the faster batch-total route)."""
        n_cells = batch["counts"].shape[0]
        return -cls.reconstruction_log_likelihood(batch, generative_outputs, "sum") / n_cells


# The parameters of ``from_anndata`` that describe the data rather than the model.
DATA_PARAMETERS = ("bio_keys", "tech_keys", "unlabelled_category")


class _EpochMeans:
    """Running batch-size-weighted sums of a few scalars, read once per epoch.

    Logging through ``self.log`` on every step costs more than a small model's step on a
    CPU; accumulating detached tensors and logging the means at epoch end gives the same
    numbers as ``on_step=False, on_epoch=True``.
    """

    def __init__(self) -> None:
        self.sums: torch.Tensor | None = None
        self.count = 0
        self.names: tuple[str, ...] = ()

    def reset(self) -> None:
        self.sums = None
        self.count = 0

    def add(self, values: dict[str, torch.Tensor], n: int) -> None:
        stacked = torch.stack([v.detach() for v in values.values()]) * n
        if self.sums is None:
            self.sums = stacked
            self.names = tuple(values)
        else:
            self.sums += stacked
        self.count += n

    def means(self) -> dict[str, torch.Tensor]:
        if self.sums is None or self.count == 0:
            return {}
        return dict(zip(self.names, self.sums / self.count, strict=True))


class BaseVAE(L.LightningModule):
    """Lightning training plan shared by the models (its data methods are the single-cell
    models'; other data kinds override them).

    A model declares its hyperparameters as a ``Hyperparameters`` subclass
    (``hyperparameter_class``) and builds its torch module from them (``build_module``);
    its constructor takes the values of its data (``data_hyperparameters``: single-cell
    models inherit ``SingleCellVAE``'s) and the hyperparameters as keyword arguments, and
    passes both to ``BaseVAE.__init__``, which saves every value and builds the module.

    Logged once per epoch: ``train/loss``, ``train/reconstruction``, ``train/kl``,
    ``kl_weight``, ``val/loss``, ``val/reconstruction``, ``val/kl``, plus each entry of
    ``LossOutput.extra`` as ``train/<name>`` and ``val/<name>``.
    """

    registry_name: ClassVar[str] = ""
    # Which of ``get_latent``'s outputs is the batch-corrected embedding, and which (if
    # any) holds the technical variation.
    corrected_latent: ClassVar[str] = "z"
    technical_latent: ClassVar[str | None] = None
    # The obs key whose labels the model predicts (``predict_labels``), if any.
    label_key: ClassVar[str | None] = None
    # Whether biological covariates (e.g. cell-type labels) feed the model.
    uses_bio_covariates: ClassVar[bool] = True
    # Raise glibc's malloc thresholds when fitting on a CPU (see models.allocator).
    tune_allocator: ClassVar[bool] = True
    # Which data the model trains on (single_cell: counts in an h5ad; paired: two
    # platforms' tables), and the constructor arguments taken from that data rather
    # than from parameters.
    data_kind: ClassVar[str] = "single_cell"
    data_hyperparameters: ClassVar[frozenset[str]] = frozenset(
        {"n_genes", "bio_categories", "tech_categories"}
    )
    # The one declaration of the model's hyperparameters and their defaults.
    hyperparameter_class: ClassVar[type[Hyperparameters]] = Hyperparameters
    module: VAEModule

    def __init__(self, data: Mapping[str, Any], hyperparameters: Mapping[str, Any]) -> None:
        """Save the data's values and the hyperparameters, then build ``self.module``.

        Args:
            data: The values taken from the data (``data_hyperparameters``).
            hyperparameters: Fields of ``hyperparameter_class``; its defaults for the rest.

        Raises:
            TypeError: A name the model does not declare; the message lists the valid ones.
        """
        super().__init__()
        self._train_means = _EpochMeans()
        self._val_means = _EpochMeans()
        self._loss_weight_overrides: dict[str, float] = {}
        self._module_default_weights: dict[str, float] | None = None
        # training_step steps the optimiser itself. Lightning's automatic optimisation
        # wraps each step in a closure and a chain of strategy and precision calls: on a
        # CPU core ~0.25 ms a step, 2-3 % of a 128-cell step, for nothing these models
        # use. The manual step does the same work in the same order (forward, zero_grad,
        # backward, clip, step), so a seed gives the same weights.
        self.automatic_optimization = False
        # The gradient-norm clip of training steps (``FitSettings.gradient_clip_val``);
        # the Trainer's own option is refused with manual steps.
        self.gradient_clip_val: float | None = None
        self.module = self.build_module(self._declare(data, hyperparameters))

    def build_module(self, hyperparameters: Any) -> VAEModule:
        """The model's torch module, from its declared hyperparameters (and ``hparams``,
        which hold the data's values by then)."""
        raise NotImplementedError

    def _declare(
        self, data: Mapping[str, Any], hyperparameters: Mapping[str, Any]
    ) -> Hyperparameters:
        """``hyperparameters`` with the declared defaults for the rest, saved (``hparams``)
        with the data's values, every one written out, so a checkpoint rebuilds the same
        model whatever the defaults are later."""
        unknown = sorted(set(hyperparameters) - set(self.hyperparameter_class.names()))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} has no hyperparameter(s) {unknown}; valid: "
                f"{sorted(self.hyperparameter_names())}"
            )
        declared = self.hyperparameter_class(**hyperparameters)
        values = asdict(declared)
        self.save_hyperparameters({**data, **{name: values[name] for name in declared.names()}})
        return declared

    # ---- covariates -----------------------------------------------------------------

    @property
    def encoders(self) -> dict[str, CovariateEncoder]:
        """``{"bio": ..., "tech": ...}`` encoders of the training covariates."""
        return {
            "bio": CovariateEncoder.from_dict(self.hparams.get("bio_categories") or {}),
            "tech": CovariateEncoder.from_dict(self.hparams.get("tech_categories") or {}),
        }

    def make_tensors(
        self,
        adata: AnnData,
        counts_layer: str | None = "counts",
        device: str | torch.device = "cpu",
        *,
        log_factorial: bool = True,
        counts_format: CountsFormat = "auto",
        max_dense_bytes: int | None = None,
    ) -> CountsTensors:
        """Tensors of ``adata`` encoded with this model's covariate categories
        (``log_factorial``, ``counts_format``, ``max_dense_bytes``: see
        ``CountsTensors.from_anndata``)."""
        return CountsTensors.from_anndata(
            adata,
            counts_layer,
            encoders=self.encoders,
            device=device,
            log_factorial=log_factorial,
            counts_format=counts_format,
            max_dense_bytes=max_dense_bytes,
        )

    @classmethod
    def from_anndata(
        cls,
        adata: AnnData,
        params: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> Self:
        """Build a model for ``adata`` from a flat parameter dict.

        ``params`` holds the constructor's hyperparameters plus ``bio_keys`` and
        ``tech_keys`` (obs columns) and ``unlabelled_category`` (a biological value that
        means "label unknown", not a category); ``n_genes`` and the category lists are
        taken from ``adata``.

        Args:
            adata: The training data.
            params: Hyperparameters, e.g. a Kedro parameter block.
            **overrides: Hyperparameters that take precedence over ``params``.

        Returns:
            An untrained model.

        Raises:
            TypeError: A parameter is not a hyperparameter of this model; the message lists
                the valid names.
        """
        values = {**(params or {}), **overrides}
        bio_keys = list(values.pop("bio_keys", []) or [])
        tech_keys = list(values.pop("tech_keys", []) or [])
        unlabelled = values.pop("unlabelled_category", None)
        valid = cls.hyperparameter_names()
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise TypeError(
                f"{cls.__name__} has no hyperparameter(s) {unknown}; valid: "
                f"{sorted({*valid, *DATA_PARAMETERS} - {'n_genes'})}"
            )
        return cls(
            n_genes=adata.n_vars,
            bio_categories=CovariateEncoder.fit(adata.obs, bio_keys, unlabelled).to_dict(),
            tech_categories=CovariateEncoder.fit(adata.obs, tech_keys).to_dict(),
            **values,
        )

    @classmethod
    def probe(cls, **hyperparameters: Any) -> Self:
        """A tiny instance (two genes, one covariate of each kind): enough to know the
        model's parts and loss weights before any data is read."""
        categories = {"covariate": ["a", "b"]}
        return cls(
            n_genes=2, bio_categories=categories, tech_categories=categories, **hyperparameters
        )

    @classmethod
    def hyperparameter_names(cls) -> list[str]:
        """Names of the constructor's hyperparameters: those taken from the data, then
        the declared ones (``hyperparameter_class``)."""
        return [*sorted(cls.data_hyperparameters), *cls.hyperparameter_class.names()]

    # ---- training -------------------------------------------------------------------

    @property
    def kl_weight(self) -> float:
        """The KL weight (beta) of the current step: the training plan's (its KL warm-up
        or a phase's own value) while training, else the model's own ``beta_max``."""
        if "kl_weight" in self._loss_weight_overrides:
            return self._loss_weight_overrides["kl_weight"]
        return float(self.hparams.beta_max)

    def loss_weight_names(self) -> tuple[str, ...]:
        """The loss weights a training phase may override: ``kl_weight`` and the
        module's ``loss_weights``."""
        return ("kl_weight", *self.module.loss_weights)

    def set_loss_weight_overrides(self, overrides: Mapping[str, float]) -> None:
        """Use ``overrides`` instead of the model's own loss weights until changed again.

        Args:
            overrides: ``{name: value}`` for names of ``loss_weight_names()``; names left
                out return to the model's own value (``beta_max``, the constructor's
                weights).

        Raises:
            ValueError: A name is not a loss weight of this model.
        """
        unknown = sorted(set(overrides) - set(self.loss_weight_names()))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no loss weight(s) {unknown}; valid: "
                f"{list(self.loss_weight_names())}"
            )
        if self._module_default_weights is None:
            self._module_default_weights = dict(self.module.loss_weights)
        self._loss_weight_overrides = {name: float(value) for name, value in overrides.items()}
        self.module.loss_weights.update(self._module_default_weights)
        self.module.loss_weights.update(
            {k: v for k, v in self._loss_weight_overrides.items() if k != "kl_weight"}
        )

    def forward(self, batch: Batch) -> LossOutput:
        """The loss of a batch at the current KL weight."""
        return self.module(batch, kl_weight=self.kl_weight)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """One optimisation step; metrics are accumulated for the epoch."""
        optimizer = self.optimizers()
        output = self.module(batch, kl_weight=self.kl_weight)
        self._train_means.add(_metrics(output), _batch_size(batch))
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(output.loss)
        optimizer.step()
        return output.loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Lightning calls this after un-scaling mixed-precision gradients.
        if self.gradient_clip_val:
            self.clip_gradients(
                optimizer, gradient_clip_val=self.gradient_clip_val, gradient_clip_algorithm="norm"
            )

    def validation_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        """Validation loss of a batch; metrics are accumulated for the epoch."""
        output = self.module(batch, kl_weight=self.kl_weight)
        self._val_means.add(_metrics(output), _batch_size(batch))
        return output.loss

    def on_train_epoch_start(self) -> None:
        self._train_means.reset()

    def on_validation_epoch_start(self) -> None:
        self._val_means.reset()

    def on_train_epoch_end(self) -> None:
        self._log_means("train", self._train_means)
        self.log("kl_weight", self.kl_weight, on_step=False, on_epoch=True)
        for name, value in self._loss_weight_overrides.items():
            if name != "kl_weight":
                self.log(name, value, on_step=False, on_epoch=True)

    def on_validation_epoch_end(self) -> None:
        self._log_means("val", self._val_means)

    def _log_means(self, stage: str, means: _EpochMeans) -> None:
        sync = self.trainer.world_size > 1
        for name, value in means.means().items():
            self.log(
                f"{stage}/{name}",
                value,
                on_step=False,
                on_epoch=True,
                prog_bar=name == "loss",
                sync_dist=sync,
            )

    def on_fit_start(self) -> None:
        if self.tune_allocator and self.device.type == "cpu":
            tune_cpu_allocator()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        """Adam or AdamW over the trainable parameters (frozen parts are left out)."""
        name = str(self.hparams.optimizer).lower()
        optimizers = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
        if name not in optimizers:
            raise ValueError(f"optimizer must be one of {sorted(optimizers)}, got {name!r}")
        parameters = [p for p in self.parameters() if p.requires_grad]
        return optimizers[name](
            parameters,
            lr=self.hparams.learning_rate,
            weight_decay=self.hparams.weight_decay,
            eps=ADAM_EPS,
            # One fused kernel instead of ~10 small ops per parameter tensor and step.
            fused=all(p.device.type in _FUSED_ADAM_DEVICES for p in parameters) or None,
        )

    # ---- inference ------------------------------------------------------------------

    @torch.inference_mode()
    def get_latent(
        self,
        data: CountsTensors | AnnData,
        batch_size: int = 1024,
        counts_layer: str | None = "counts",
    ) -> dict[str, np.ndarray]:
        """Posterior means of every cell, in eval mode, batch by batch.

        Args:
            data: Tensors, or an AnnData encoded with this model's categories.
            batch_size: Cells per forward pass (bounds the memory used).
            counts_layer: Layer of raw counts when ``data`` is an AnnData.

        Returns:
            ``(n_cells, d)`` float32 arrays keyed by ``module.latent_keys``.
        """
        chunks: dict[str, list[np.ndarray]] = {key: [] for key in self.module.latent_keys}
        for batch in self._eval_batches(data, batch_size, counts_layer, likelihood=False):
            latent = self.module.latent(self.module.inference(batch, sample=False))
            for key, value in latent.items():
                chunks[key].append(value.float().cpu().numpy())
        return {key: _concatenate(parts) for key, parts in chunks.items()}

    @torch.inference_mode()
    def reconstruction_error(
        self,
        data: CountsTensors | AnnData,
        batch_size: int = 1024,
        counts_layer: str | None = "counts",
    ) -> np.ndarray:
        """Negative log-likelihood of each cell's counts at its posterior mean.

        Args:
            data: Tensors, or an AnnData encoded with this model's categories.
            batch_size: Cells per forward pass.
            counts_layer: Layer of raw counts when ``data`` is an AnnData.

        Returns:
            ``(n_cells,)`` float64 NLLs, summed over genes.
        """
        parts = []
        for batch in self._eval_batches(data, batch_size, counts_layer):
            inference_outputs = self.module.inference(batch, sample=False)
            generative_outputs = self.module.generative(
                **self.module.generative_inputs(batch, inference_outputs)
            )
            nll = -self.module.reconstruction_log_likelihood(batch, generative_outputs)
            parts.append(nll.double().cpu().numpy())
        return _concatenate(parts)

    def _eval_batches(
        self,
        data: CountsTensors | AnnData,
        batch_size: int,
        counts_layer: str | None,
        likelihood: bool = True,
    ) -> Iterator[Batch]:
        """Batches of ``data`` in eval mode; ``likelihood=False``: an AnnData's cells are
        converted without the likelihood's constant, which encoding does not read."""
        was_training = self.training
        self.eval()
        try:
            for tensors in _tensor_chunks(self, data, batch_size, counts_layer, likelihood):
                for start in range(0, tensors.n_obs, batch_size):
                    batch = tensors.slice(start, min(start + batch_size, tensors.n_obs))
                    yield {key: value.to(self.device) for key, value in batch.items()}
        finally:
            self.train(was_training)


class SingleCellVAE(BaseVAE):
    """A model of single-cell counts: its data are the number of genes and the covariate
    categories.

    Args:
        n_genes: Number of genes.
        bio_categories: ``{obs key: [categories]}`` of the biological covariates.
        tech_categories: ``{obs key: [categories]}`` of the technical covariates.
        **hyperparameters: Fields of the model's ``hyperparameter_class`` (its defaults
            for the rest).
    """

    def __init__(
        self,
        n_genes: int,
        *,
        bio_categories: dict[str, list[str]] | None = None,
        tech_categories: dict[str, list[str]] | None = None,
        **hyperparameters: Any,
    ) -> None:
        data = {
            "n_genes": n_genes,
            "bio_categories": bio_categories,
            "tech_categories": tech_categories,
        }
        super().__init__(data, hyperparameters)


def _batch_size(batch: Batch) -> int:
    # Every tensor of a batch has one row per cell (or sample), whatever the model.
    return next(iter(batch.values())).shape[0]


def _metrics(output: LossOutput) -> dict[str, torch.Tensor]:
    return {
        "loss": output.loss,
        "reconstruction": output.reconstruction,
        "kl": output.kl,
        **output.extra,
    }


# Cells densified at a time when encoding an AnnData: 16,384 x 2,000 float32 is 131 MB.
ENCODING_CHUNK_ROWS = 16_384


def _tensor_chunks(
    model: BaseVAE,
    data: CountsTensors | AnnData,
    batch_size: int,
    counts_layer: str | None,
    likelihood: bool = True,
) -> Iterator[CountsTensors]:
    if isinstance(data, CountsTensors):
        yield data
        return
    chunk = max(batch_size, ENCODING_CHUNK_ROWS)
    matrix = data.X if counts_layer is None else data.layers.get(counts_layer)
    if sp.issparse(matrix):
        # Converted whole (the CSR arrays are shared, the covariates encoded once), then
        # densified a chunk at a time.
        tensors = model.make_tensors(
            data, counts_layer, log_factorial=likelihood, counts_format="sparse"
        )
        yield from tensors.dense_chunks(chunk)
        return
    # A dense AnnData chunk by chunk: converting it whole could copy it (to float32).
    for start in range(0, data.n_obs, chunk):
        view = data[start : min(start + chunk, data.n_obs)]
        yield model.make_tensors(view, counts_layer, log_factorial=likelihood)


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.empty((0,), dtype=np.float32)
