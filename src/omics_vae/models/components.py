"""Building blocks shared by the models: MLPs, a Gaussian encoder, an NB decoder, priors.

The layer recipe follows scvi-tools' ``FCLayers`` so that models built from these blocks
match scVI at equal settings: ``Linear -> BatchNorm(momentum=0.01, eps=0.001) ->
LayerNorm (no affine) -> activation -> Dropout``, with optional covariates concatenated
to the input of the first layer or of every layer.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}


# Linear maps with at least this many weights run on oneDNN on a CPU (see FastLinear);
# below it the format conversions cost more than they save.
FAST_LINEAR_MIN_WEIGHTS = 65536


class _OneDNNLinear(torch.autograd.Function):
    """``x @ W.T + b`` and its gradients as oneDNN matrix products (float32, CPU)."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _onednn_matmul_t(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _onednn_matmul_t(grad, weight.t())
        if ctx.needs_input_grad[1]:
            grad_weight = _onednn_matmul_t(grad.t(), x.t())
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(dim=0)
        return grad_x, grad_weight, grad_bias


def _onednn_matmul_t(
    a: torch.Tensor, b: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """``a @ b.T (+ bias)`` through oneDNN; dense, possibly transposed, inputs."""
    try:
        return torch.ops.mkldnn._linear_pointwise(a, b, bias, "none", [], "")
    except RuntimeError:
        # oneDNN takes transposed operands as they are, but should some layout be
        # refused, BLAS computes the same product.
        return torch.nn.functional.linear(a, b, bias)


@functools.cache
def onednn_usable() -> bool:
    """Whether this torch build runs float32 linear maps on oneDNN, checked once."""
    try:
        generator = torch.Generator().manual_seed(0)
        a = torch.randn(5, 7, generator=generator)
        b = torch.randn(3, 7, generator=generator)
        c = torch.randn(5, 4, generator=generator)
        bias = torch.randn(3, generator=generator)
        plain = _onednn_matmul_t(a, b, bias)
        # Transposed (strided) operands, as in the backward pass: a.T @ c.
        transposed = _onednn_matmul_t(a.t(), c.t())
        return torch.allclose(plain, torch.addmm(bias, a, b.t()), atol=1e-5) and torch.allclose(
            transposed, a.t() @ c, atol=1e-5
        )
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


class FastLinear(nn.Linear):
    """``nn.Linear`` whose float32 CPU products run on oneDNN instead of BLAS.

    PyTorch's CPU wheels multiply float32 matrices with MKL, which takes a generic code
    path on AMD processors; oneDNN uses their AVX-512 units. Measured on 2 AMD EPYC
    cores (single thread), the 2,000 x 128 layers of a scVI-sized model ran their
    forward and both gradients 2.2x faster (batch 128 and 1,024). Anything else
    (autocast, other devices or dtypes, batched inputs, a build without oneDNN) takes
    ``nn.Linear``'s path; parameters and results are the same.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._on_onednn(x):
            return _OneDNNLinear.apply(x, self.weight, self.bias)
        return super().forward(x)

    def linear_without_bias(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``x @ weight.T`` on the path ``forward`` would take (``weight``: a part of
        this map's weight)."""
        if self._on_onednn(x):
            return _OneDNNLinear.apply(x, weight, None)
        return nn.functional.linear(x, weight)

    def _on_onednn(self, x: torch.Tensor) -> bool:
        return (
            x.dim() == 2
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and onednn_usable()
        )


def linear(n_in: int, n_out: int) -> nn.Linear:
    """A linear map: ``FastLinear`` when it is large enough to gain from oneDNN."""
    if n_in * n_out >= FAST_LINEAR_MIN_WEIGHTS:
        return FastLinear(n_in, n_out)
    return nn.Linear(n_in, n_out)


def activation_module(name: str) -> nn.Module:
    """An activation layer by name (``relu``, ``leaky_relu``, ``elu``, ``gelu``, ...)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


@dataclass(frozen=True)
class HiddenLayers:
    """How a network's fully connected layers are built: ``n_layers`` layers, each
    ``Linear -> [BatchNorm] -> [LayerNorm] -> activation -> [Dropout]``, of width
    ``n_hidden``. The defaults are scvi-tools' ``FCLayers``'; a model sets every field
    from its hyperparameters (``base.NetworkHyperparameters``).

    Attributes:
        n_hidden: Width of the layers (the last one's is the network's choice).
        n_layers: Number of layers (>= 1).
        batch_norm: Use ``BatchNorm1d`` after each linear map.
        layer_norm: Use an affine-free ``LayerNorm`` after each linear map.
        activation: Activation name.
        dropout: Dropout rate after each activation (0 disables it).
    """

    n_hidden: int = 128
    n_layers: int = 1
    batch_norm: bool = True
    layer_norm: bool = False
    activation: str = "relu"
    dropout: float = 0.1

    def layer(self, n_in: int, n_out: int) -> nn.Sequential:
        """One layer from ``n_in`` to ``n_out`` features."""
        parts: list[nn.Module] = [linear(n_in, n_out)]
        if self.batch_norm:
            # scVI's values (from the original TensorFlow implementation).
            parts.append(nn.BatchNorm1d(n_out, momentum=0.01, eps=0.001))
        if self.layer_norm:
            parts.append(nn.LayerNorm(n_out, elementwise_affine=False))
        parts.append(activation_module(self.activation))
        if self.dropout > 0:
            parts.append(nn.Dropout(p=self.dropout))
        return nn.Sequential(*parts)


class MLP(nn.Module):
    """Fully connected layers (``HiddenLayers``), optionally fed covariates.

    Args:
        n_in: Input width.
        n_out: Output width (of the last layer, which is activated too).
        layers: How many layers, how wide in between, and their normalisation,
            activation and dropout.
        n_covariates: Width of a covariate vector concatenated to the layer inputs.
        inject_covariates: Concatenate covariates to every layer's input, not just the
            first one's.
    """

    def __init__(
        self,
        n_in: int,
        n_out: int,
        layers: HiddenLayers,
        *,
        n_covariates: int = 0,
        inject_covariates: bool = True,
    ) -> None:
        super().__init__()
        if layers.n_layers < 1:
            raise ValueError(f"n_layers must be at least 1, got {layers.n_layers}")
        self.n_covariates = n_covariates
        self.inject_covariates = inject_covariates
        widths = [n_in] + [layers.n_hidden] * (layers.n_layers - 1) + [n_out]
        self.layers = nn.ModuleList(
            layers.layer(widths[i] + (n_covariates if self._injects(i) else 0), widths[i + 1])
            for i in range(layers.n_layers)
        )

    def _injects(self, layer: int) -> bool:
        return self.n_covariates > 0 and (layer == 0 or self.inject_covariates)

    def forward(self, x: torch.Tensor, covariates: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the layers.

        Args:
            x: ``(b, n_in)`` inputs.
            covariates: ``(b, n_covariates)`` covariates; required when ``n_covariates``.

        Returns:
            ``(b, n_out)`` outputs.
        """
        for i, layer in enumerate(self.layers):
            if not self._injects(i):
                x = layer(x)
            elif isinstance(layer[0], FastLinear) and not torch.is_grad_enabled():
                x = layer[1:](_linear_of_concatenation(layer[0], x, covariates))
            else:
                x = layer(torch.cat((x, covariates), dim=-1))
        return x


def _linear_of_concatenation(
    linear_map: FastLinear, x: torch.Tensor, covariates: torch.Tensor
) -> torch.Tensor:
    """``linear_map(cat(x, covariates))`` without building the concatenation: a wide
    input (the counts) and a few one-hot columns would be copied into a new matrix of an
    odd width, and oneDNN multiplies the aligned width faster. The weight keeps its one
    layout (checkpoints and surgery see the same parameter).

    Used without autograd only (embedding, validation, prediction): there it made an
    inVAE encoder 1.75x faster on 20,000 cells. In training at batch 128 the weight
    slice's copy and its gradient cost 11 % more than the concatenation saves
    (benchmarks/embedding_speed.py, docs/benchmarks.md)."""
    n_in = x.shape[-1]
    weight = linear_map.weight
    return linear_map.linear_without_bias(x, weight[:, :n_in].contiguous()) + torch.addmm(
        linear_map.bias, covariates, weight[:, n_in:].t()
    )


class GaussianEncoder(nn.Module):
    """Maps inputs to the mean and variance of a diagonal Gaussian posterior.

    Args:
        n_in: Input width.
        n_latent: Latent dimensions.
        layers: The hidden layers (their output is ``layers.n_hidden`` wide).
        n_covariates: Covariate width (see ``MLP``).
        inject_covariates: Covariates at every layer, not just the first.
        var_eps: Floor added to the variance.
        max_log_var: Upper clamp of the log-variance before ``exp``.
    """

    def __init__(
        self,
        n_in: int,
        n_latent: int,
        layers: HiddenLayers,
        *,
        n_covariates: int = 0,
        inject_covariates: bool = True,
        var_eps: float = 1e-4,
        max_log_var: float = 15.0,
    ) -> None:
        super().__init__()
        self.var_eps = var_eps
        self.max_log_var = max_log_var
        self.hidden = MLP(
            n_in,
            layers.n_hidden,
            layers,
            n_covariates=n_covariates,
            inject_covariates=inject_covariates,
        )
        self.mean = nn.Linear(layers.n_hidden, n_latent)
        self.log_var = nn.Linear(layers.n_hidden, n_latent)

    def forward(
        self, x: torch.Tensor, covariates: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters.

        Args:
            x: ``(b, n_in)`` inputs.
            covariates: ``(b, n_covariates)`` covariates, if any.

        Returns:
            ``(mean, var)``, each ``(b, n_latent)``.
        """
        h = self.hidden(x, covariates)
        # Clamping keeps exp() finite early in training, when the variance head is wild.
        var = torch.exp(self.log_var(h).clamp(max=self.max_log_var)) + self.var_eps
        return self.mean(h), var

    def posterior(
        self, x: torch.Tensor, covariates: torch.Tensor | None = None, sample: bool = True
    ) -> dict[str, torch.Tensor]:
        """``qz_mean``, ``qz_var`` and ``z``: a reparameterised draw from the posterior, or
        its mean when not ``sample``; each ``(b, n_latent)``."""
        mean, var = self(x, covariates)
        z = mean + var.sqrt() * torch.randn_like(mean) if sample else mean
        return {"qz_mean": mean, "qz_var": var, "z": z}


class NBDecoder(nn.Module):
    """Maps latents to the logits of the per-gene frequencies of a negative binomial.

    The frequencies are ``softmax(logits)`` over genes and the means are the frequencies
    times the observed library size: ``log mu = log_softmax(logits) + log_library``. The
    decoder returns the logits and leaves the softmax to the likelihood, which fuses it.

    Args:
        n_latent: Latent width.
        n_genes: Number of genes.
        layers: The hidden layers (scVI's decoder has no dropout).
        n_covariates: Covariate width injected into the hidden layers.
        inject_covariates: Covariates at every layer, not just the first.
    """

    def __init__(
        self,
        n_latent: int,
        n_genes: int,
        layers: HiddenLayers,
        *,
        n_covariates: int = 0,
        inject_covariates: bool = True,
    ) -> None:
        super().__init__()
        self.hidden = MLP(
            n_latent,
            layers.n_hidden,
            layers,
            n_covariates=n_covariates,
            inject_covariates=inject_covariates,
        )
        self.frequencies = linear(layers.n_hidden, n_genes)

    def forward(self, z: torch.Tensor, covariates: torch.Tensor | None = None) -> torch.Tensor:
        """Frequency logits.

        Args:
            z: ``(b, n_latent)`` latents.
            covariates: ``(b, n_covariates)`` covariates, if any.

        Returns:
            ``(b, n_genes)`` logits.
        """
        return self.frequencies(self.hidden(z, covariates))


def nb_log_mean(logits: torch.Tensor, log_library: torch.Tensor) -> torch.Tensor:
    """``log mu = log_softmax(logits) + log_library``: the NB decoder's log-means."""
    return torch.log_softmax(logits, dim=-1) + log_library


class GeneDispersion(nn.Module):
    """Learned per-gene inverse dispersion ``theta = exp(log_theta)``.

    Args:
        n_genes: Number of genes.
    """

    def __init__(self, n_genes: int) -> None:
        super().__init__()
        # scVI's initialisation: a standard normal draw per gene.
        self.log_theta = nn.Parameter(torch.randn(n_genes))

    def forward(self) -> torch.Tensor:
        """The ``(n_genes,)`` log inverse dispersions."""
        return self.log_theta


class ConditionalGaussianPrior(nn.Module):
    """A diagonal Gaussian prior whose parameters are an MLP of covariates.

    The log-variance is always a function of the covariates; the mean is too when
    ``learn_mean`` (else 0), sharing the hidden layers with the variance head. Without
    covariates (``n_covariates == 0``) this is the standard normal and has no parameters.

    Args:
        n_covariates: Width of the one-hot covariates.
        n_latent: Latent dimensions.
        hidden: Hidden layers between the covariates and the heads; ``None``: the heads
            are linear maps of the covariates.
        learn_mean: Learn the mean instead of fixing it at 0.
        var_eps: Floor added to the variance.
    """

    def __init__(
        self,
        n_covariates: int,
        n_latent: int,
        hidden: HiddenLayers | None = None,
        *,
        learn_mean: bool = False,
        var_eps: float = 1e-4,
    ) -> None:
        super().__init__()
        self.n_covariates = n_covariates
        self.n_latent = n_latent
        self.learn_mean = learn_mean
        self.var_eps = var_eps
        if n_covariates == 0:
            return
        if hidden is not None:
            self.hidden: nn.Module = MLP(n_covariates, hidden.n_hidden, hidden)
            head_in = hidden.n_hidden
        else:
            self.hidden = nn.Identity()
            head_in = n_covariates
        self.log_var = nn.Linear(head_in, n_latent)
        self.mean = nn.Linear(head_in, n_latent) if learn_mean else None

    @property
    def is_standard_normal(self) -> bool:
        """Whether the prior is N(0, I) (no covariates)."""
        return self.n_covariates == 0

    def forward(self, covariates: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Prior parameters.

        Args:
            covariates: ``(b, n_covariates)`` one-hot covariates.

        Returns:
            ``(mean, var)``, each ``(b, n_latent)``; ``None`` stands for 0 (mean) and 1
            (variance), so the KL can take its cheaper standard-normal form.
        """
        if self.is_standard_normal:
            return None, None
        h = self.hidden(covariates)
        var = torch.exp(self.log_var(h)) + self.var_eps
        mean = self.mean(h) if self.mean is not None else None
        return mean, var
