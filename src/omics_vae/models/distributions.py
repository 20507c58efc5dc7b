"""Log-likelihoods and divergences written as plain tensor arithmetic.

``torch.distributions`` objects validate arguments and broadcast shapes on every call;
in a training step that runs thousands of times the closed forms below are cheaper and
let the models reuse quantities they already have (log means from a log-softmax, the
per-cell log-factorial precomputed by the data loader).
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch

from omics_vae.data.tensors import COUNT_HISTOGRAM_BINS


def negative_binomial_log_likelihood(
    x: torch.Tensor, mu: torch.Tensor, theta: torch.Tensor, eps: float = 1e-8
) -> torch.Tensor:
    """Element-wise log-probability of counts under a negative binomial.

    Mean/inverse-dispersion parameterisation: ``Var = mu + mu^2 / theta``.
    ``log(theta + mu)`` is computed once and shared by both terms it appears in.

    Args:
        x: Counts, any shape.
        mu: Means (>= 0), broadcastable to ``x``.
        theta: Inverse dispersions (> 0), broadcastable to ``x``.
        eps: Guard inside the logarithms, for ``mu = 0``.

    Returns:
        ``log NB(x | mu, theta)`` with the broadcast shape of the inputs.
    """
    log_theta_mu = torch.log(theta + mu + eps)
    return (
        theta * (torch.log(theta + eps) - log_theta_mu)
        + x * (torch.log(mu + eps) - log_theta_mu)
        + torch.lgamma(x + theta)
        - torch.lgamma(theta)
        - torch.lgamma(x + 1)
    )


# Counts below this value enter ``log_rising_factorial_sum`` through a per-gene
# histogram; larger ones (rare in single-cell data) are corrected one by one. The data
# loader's ``count_keys`` are built for the same table.
RISING_FACTORIAL_TABLE = COUNT_HISTOGRAM_BINS


def log_rising_factorial_sum(
    x: torch.Tensor, theta: torch.Tensor, count_keys: torch.Tensor | None = None
) -> torch.Tensor:
    """``sum_{c,g} lgamma(x_cg + theta_g) - lgamma(theta_g)`` over a batch.

    This is the only part of the NB log-likelihood that needs ``lgamma`` per entry, and
    ``lgamma``/``digamma`` cost ~3/13 ns per element on a CPU core, more than the rest of
    the likelihood together. For integer counts the term is a log rising factorial,
    ``sum_{k < x} log(theta + k)``, so it only depends on how many cells of the batch
    exceed each count ``k`` for each gene: one ``bincount`` of the batch, then
    ``n_genes x RISING_FACTORIAL_TABLE`` logarithms (whose backward is a division, not a
    digamma). Counts beyond the table are corrected exactly; non-integer values fall back
    to ``lgamma``.

    Args:
        x: ``(b, g)`` non-negative counts.
        theta: ``(g,)`` inverse dispersions.
        count_keys: The batch's ``count_keys`` (``omics_vae.data.tensors.CountKeys``):
            the histogram is then counted from the non-zeros' precomputed keys; ``None``
            builds it from ``x``.

    Returns:
        Scalar sum.
    """
    with torch.autocast(x.device.type, enabled=False):
        return _log_rising_factorial_sum(x, theta, count_keys)


def _log_rising_factorial_sum(
    x: torch.Tensor, theta: torch.Tensor, count_keys: torch.Tensor | None
) -> torch.Tensor:
    table = RISING_FACTORIAL_TABLE
    n_cells, n_genes = x.shape
    if count_keys is None:
        histogram = _dense_histogram(x)
        if histogram is None:
            return (torch.lgamma(x + theta) - torch.lgamma(theta)).sum()
    else:
        histogram = torch.bincount(count_keys, minlength=n_genes * (table + 1))
        histogram = histogram.view(n_genes, table + 1)
        # The keys are the non-zeros': bin 0 holds the cells left.
        histogram[:, 0] = n_cells - histogram[:, 1:].sum(dim=1)
    steps = _histogram_offsets(n_genes, table, x.device)[1]
    # exceed[g, k] = number of cells with count > k, for k < table.
    exceed = n_cells - histogram[:, :table].cumsum(dim=1)
    total = torch.sum(exceed * torch.log(theta.unsqueeze(1) + steps.to(theta.dtype)))
    # Counts above the table: only scan the few genes that have any.
    big_genes = histogram[:, table].nonzero().squeeze(1)
    if big_genes.numel():
        columns = x.index_select(1, big_genes)
        rows, cols = (columns > table).nonzero(as_tuple=True)
        big_theta = theta[big_genes[cols]]
        above = torch.lgamma(columns[rows, cols] + big_theta) - torch.lgamma(table + big_theta)
        total = total + above.sum()
    return total


def _dense_histogram(x: torch.Tensor) -> torch.Tensor | None:
    """``(g, table + 1)`` counts of each value per gene of a dense batch; ``None`` when a
    count is not an integer."""
    table = RISING_FACTORIAL_TABLE
    n_genes = x.shape[1]
    clamped = x.clamp(max=table)  # bin `table` collects every count >= table
    keys = clamped.to(torch.int32)
    if not _truncation_is_exact(clamped, keys):
        return None
    keys += _histogram_offsets(n_genes, table, x.device)[0]
    histogram = torch.bincount(keys.view(-1), minlength=n_genes * (table + 1))
    return histogram.view(n_genes, table + 1)


@functools.cache
def _histogram_offsets(
    n_genes: int, table: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-gene bin offsets ``(g,)`` int32 and the counts ``0 .. table - 1``."""
    offsets = torch.arange(0, n_genes * (table + 1), table + 1, dtype=torch.int32, device=device)
    return offsets, torch.arange(table, device=device)


def _truncation_is_exact(clamped: torch.Tensor, truncated: torch.Tensor) -> bool:
    """Whether int truncation kept every value, judged from row sums (two cheap reductions).

    Row sums of integers below ``2**24`` are exact in float32, so integer counts always
    pass; non-integer counts fail unless their fractions are too small to move a float32
    row sum, in which case truncating them changes the likelihood by as little.
    """
    return torch.equal(clamped.sum(dim=-1), truncated.sum(dim=-1).to(clamped.dtype))


class _SoftmaxNBTerms(torch.autograd.Function):
    """``sum_g x log mu - (x + theta) log(theta + mu)`` per cell, ``mu = softmax(h) * L``.

    The terms of the NB log-likelihood that involve the decoder output, with a
    hand-written backward. Autograd would keep a dozen ``(b, g)`` intermediates and make
    as many passes over them; here the forward makes ~8 passes and the backward ~9, half
    of them in place. With ``a = (x + theta) mu / (theta + mu)``:
    ``d/dh = x - a - mu (sum x - sum a) / L`` and
    ``d/dtheta = -log(theta + mu) - (x + theta) / (theta + mu)``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        logits: torch.Tensor,
        log_library: torch.Tensor,
        log_theta: torch.Tensor,
    ) -> torch.Tensor:
        # Mixed precision would run the products below in half precision.
        with torch.autocast(x.device.type, enabled=False):
            return _SoftmaxNBTerms._forward(ctx, x, logits, log_library, log_theta)

    @staticmethod
    def _forward(
        ctx: Any,
        x: torch.Tensor,
        logits: torch.Tensor,
        log_library: torch.Tensor,
        log_theta: torch.Tensor,
    ) -> torch.Tensor:
        theta = torch.exp(log_theta)
        log_mu = torch.log_softmax(logits, dim=-1).add_(log_library)
        mu = torch.exp(log_mu)
        theta_mu = torch.add(mu, theta)
        log_theta_mu = torch.log(theta_mu)
        x_sum = x.sum(dim=-1)
        # x . (log mu - log(theta + mu)) - theta . log(theta + mu), reusing log_mu's memory.
        terms = torch.linalg.vecdot(x, log_mu.sub_(log_theta_mu)) - log_theta_mu @ theta
        ctx.save_for_backward(x, mu, theta_mu, log_theta_mu, theta, x_sum, log_library)
        return terms

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        with torch.autocast(grad.device.type, enabled=False):
            return _SoftmaxNBTerms._backward(ctx, grad.to(ctx.saved_tensors[1].dtype))

    @staticmethod
    def _backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, mu, theta_mu, log_theta_mu, theta, x_sum, log_library = ctx.saved_tensors
        ratio = torch.add(x, theta).div_(theta_mu)  # (x + theta) / (theta + mu)
        grad_logits = torch.mul(ratio, mu)  # a
        excess = x_sum - grad_logits.sum(dim=-1)  # sum x - sum a
        torch.sub(x, grad_logits, out=grad_logits)
        scale = excess * torch.exp(-log_library.squeeze(-1))
        grad_logits.addcmul_(mu, scale.unsqueeze(-1), value=-1.0)
        grad_logits.mul_(grad.unsqueeze(-1))
        grad_library = (grad * excess).unsqueeze(-1) if ctx.needs_input_grad[2] else None
        grad_theta = -(grad @ log_theta_mu) - grad @ ratio
        return None, grad_logits, grad_library, grad_theta * theta


def softmax_nb_log_likelihood(
    x: torch.Tensor,
    logits: torch.Tensor,
    log_library: torch.Tensor,
    log_theta: torch.Tensor,
    *,
    log_factorial: torch.Tensor | None = None,
    reduction: Literal["cell", "sum"] = "cell",
    count_keys: torch.Tensor | None = None,
) -> torch.Tensor:
    """NB log-likelihood with means ``softmax(logits) * exp(log_library)``, the models' path.

    Written as ``lgamma(x + theta) - lgamma(theta) - lgamma(x + 1) + theta log theta
    + x log mu - (x + theta) log(theta + mu)``: the decoder terms go through a fused
    autograd function, the terms in ``theta`` alone are summed once per gene, and
    ``sum_g lgamma(x + 1)``, which does not depend on the parameters, is passed in
    precomputed. With ``reduction="sum"`` the lgamma terms use the histogram shortcut of
    ``log_rising_factorial_sum``, which only gives batch totals.

    Args:
        x: ``(b, g)`` counts.
        logits: ``(b, g)`` decoder outputs before the softmax over genes.
        log_library: ``(b, 1)`` log library sizes.
        log_theta: ``(g,)`` log inverse dispersions.
        log_factorial: ``(b,)`` ``sum_g lgamma(x + 1)``; computed here when ``None``.
        reduction: ``"cell"`` for ``(b,)`` per-cell values, ``"sum"`` for their sum.
        count_keys: The batch's precomputed histogram keys, for ``"sum"`` (see
            ``log_rising_factorial_sum``).

    Returns:
        Per-cell log-likelihoods or their sum.
    """
    # Under mixed precision the decoder emits half-precision logits; the likelihood of
    # counts in the thousands needs float32.
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if log_factorial is None:
        log_factorial = torch.lgamma(x + 1).sum(dim=-1)
    theta = torch.exp(log_theta)
    decoder_terms = _SoftmaxNBTerms.apply(x, logits, log_library, log_theta)
    theta_terms = (theta * log_theta).sum()
    if reduction == "sum":
        rising = log_rising_factorial_sum(x, theta, count_keys)
        return decoder_terms.sum() + x.shape[0] * theta_terms + rising - log_factorial.sum()
    if reduction != "cell":
        raise ValueError(f"reduction must be 'cell' or 'sum', got {reduction!r}")
    rising = (torch.lgamma(x + theta) - torch.lgamma(theta)).sum(dim=-1)
    return decoder_terms + theta_terms + rising - log_factorial


def gaussian_kl(
    q_mean: torch.Tensor,
    q_var: torch.Tensor,
    p_mean: torch.Tensor | None = None,
    p_var: torch.Tensor | None = None,
) -> torch.Tensor:
    """``KL(N(q_mean, q_var) || N(p_mean, p_var))`` of diagonal Gaussians, summed over dims.

    Args:
        q_mean: ``(b, d)`` posterior means.
        q_var: ``(b, d)`` posterior variances.
        p_mean: Prior means broadcastable to ``(b, d)``; ``None`` is 0.
        p_var: Prior variances broadcastable to ``(b, d)``; ``None`` is 1.

    Returns:
        ``(b,)`` divergences.
    """
    squared = q_mean.square() if p_mean is None else (q_mean - p_mean).square()
    if p_var is None:
        terms = q_var + squared - torch.log(q_var) - 1
    else:
        terms = (q_var + squared) / p_var + torch.log(p_var) - torch.log(q_var) - 1
    return 0.5 * terms.sum(dim=-1)


def gaussian_log_density_matrix(
    z: torch.Tensor, mean: torch.Tensor, var: torch.Tensor
) -> torch.Tensor:
    """``log N(z_i | mean_j, var_j)`` for every pair of rows, per dimension.

    Args:
        z: ``(b, d)`` samples.
        mean: ``(b, d)`` means.
        var: ``(b, d)`` variances.

    Returns:
        ``(b, b, d)`` log densities, sample index first.
    """
    diff = z.unsqueeze(1) - mean.unsqueeze(0)
    return -0.5 * (diff.square() / var.unsqueeze(0) + torch.log(var).unsqueeze(0) + _LOG_2PI)


_LOG_2PI = math.log(2 * math.pi)


def minibatch_total_correlation(
    z: torch.Tensor,
    mean: torch.Tensor,
    var: torch.Tensor,
    groups: list[slice],
    dataset_size: int,
) -> torch.Tensor:
    """Total correlation between groups of latent dimensions, by minibatch weighting.

    Estimates ``E_q(z)[log q(z) - sum_k log q(z_k)]`` where ``q(z)`` is the aggregate
    posterior, with the minibatch-weighted-sampling estimator of Chen et al. (2018),
    "Isolating sources of disentanglement in VAEs", as inVAE does. Costs ``O(b^2 d)``.

    Args:
        z: ``(b, d)`` posterior samples.
        mean: ``(b, d)`` posterior means.
        var: ``(b, d)`` posterior variances.
        groups: Slices of the latent dimensions, e.g. ``[z_i, z_s]``.
        dataset_size: Number of cells in the training set.

    Returns:
        Scalar estimate (averaged over the batch).
    """
    log_q = gaussian_log_density_matrix(z, mean, var)
    log_norm = math.log(z.shape[0] * dataset_size)
    joint = torch.logsumexp(log_q.sum(dim=2), dim=1) - log_norm
    marginals = sum(
        torch.logsumexp(log_q[:, :, group].sum(dim=2), dim=1) - log_norm for group in groups
    )
    return (joint - marginals).mean()


def gaussian_mmd(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared MMD between two samples under a sum of RBF kernels of several widths.

    Widths are multiples of the latent dimension, so the penalty does not vanish or
    saturate as the latent grows.
    """
    d = x.shape[-1]
    joint = torch.cat((x, y))
    distances = torch.cdist(joint, joint).pow(2)
    kernel = sum(torch.exp(-distances / (2 * s * d)) for s in (0.25, 1.0, 4.0))
    n = x.shape[0]
    k_xx, k_yy, k_xy = kernel[:n, :n], kernel[n:, n:], kernel[:n, n:]
    return k_xx.mean() + k_yy.mean() - 2 * k_xy.mean()


def batch_mmd(z: torch.Tensor, batch_index: torch.Tensor) -> torch.Tensor:
    """Mean over the minibatch's batches of ``gaussian_mmd(z of the batch, z of the rest)``:
    zero when the latent's distribution does not depend on the batch (trVAE's penalty).

    Args:
        z: ``(b, d)`` latents.
        batch_index: ``(b,)`` batch codes.

    Returns:
        A scalar; 0 when the minibatch holds fewer than two batches of two cells.
    """
    penalties = []
    for batch in torch.unique(batch_index):
        inside = batch_index == batch
        n_inside = int(inside.sum())
        if 2 <= n_inside <= z.shape[0] - 2:
            penalties.append(gaussian_mmd(z[inside], z[~inside]))
    if not penalties:
        return z.new_zeros(())
    return torch.stack(penalties).mean()
