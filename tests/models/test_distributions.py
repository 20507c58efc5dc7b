"""Likelihoods and divergences against torch.distributions and plain autograd."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import NegativeBinomial, Normal, kl_divergence

from omics_vae.models.distributions import (
    RISING_FACTORIAL_TABLE,
    _SoftmaxNBTerms,
    gaussian_kl,
    log_rising_factorial_sum,
    minibatch_total_correlation,
    negative_binomial_log_likelihood,
    softmax_nb_log_likelihood,
)


def random_counts(b: int, g: int, seed: int = 0, dtype: torch.dtype = torch.float32):
    generator = torch.Generator().manual_seed(seed)
    mean = torch.exp(torch.randn(b, g, generator=generator, dtype=dtype) * 1.5)
    counts = torch.poisson(mean, generator=generator)
    counts[0, :3] = torch.tensor([0.0, 40.0, 250.0], dtype=dtype)  # beyond the table
    return counts


def reference_nb(x, logits, log_library, log_theta):
    """Per-cell NB log-likelihood by torch.distributions, mean softmax(logits) * L."""
    mu = torch.softmax(logits, dim=-1) * torch.exp(log_library)
    theta = torch.exp(log_theta).expand_as(mu)
    distribution = NegativeBinomial(total_count=theta, logits=torch.log(mu) - torch.log(theta))
    return distribution.log_prob(x).sum(dim=-1)


def test_negative_binomial_log_likelihood_matches_torch_distributions():
    generator = torch.Generator().manual_seed(1)
    x = torch.poisson(torch.rand(64, 30, generator=generator) * 20, generator=generator)
    mu = torch.rand(64, 30, generator=generator) * 30 + 0.01
    theta = torch.rand(30, generator=generator) * 10 + 0.05
    ours = negative_binomial_log_likelihood(x, mu, theta)
    expected = NegativeBinomial(
        total_count=theta.expand_as(mu), logits=torch.log(mu) - torch.log(theta)
    ).log_prob(x)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    assert torch.isfinite(negative_binomial_log_likelihood(x, torch.zeros_like(mu), theta)).all()


@pytest.mark.parametrize("reduction", ["cell", "sum"])
def test_softmax_nb_matches_the_reference_with_gradients(reduction):
    x = random_counts(48, 25, dtype=torch.float64)
    log_library = torch.log(x.sum(dim=-1, keepdim=True))
    logits = torch.randn(48, 25, dtype=torch.float64, requires_grad=True)
    log_theta = torch.randn(25, dtype=torch.float64, requires_grad=True)
    log_factorial = torch.lgamma(x + 1).sum(dim=-1)

    expected = reference_nb(x, logits, log_library, log_theta)
    expected_grads = torch.autograd.grad(expected.sum(), (logits, log_theta))
    ours = softmax_nb_log_likelihood(
        x, logits, log_library, log_theta, log_factorial=log_factorial, reduction=reduction
    )
    grads = torch.autograd.grad(ours.sum(), (logits, log_theta))

    target = expected if reduction == "cell" else expected.sum()
    torch.testing.assert_close(ours, target, rtol=1e-9, atol=1e-8)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-8)


def test_softmax_nb_in_float32_and_without_precomputed_factorials():
    x = random_counts(32, 20)
    log_library = torch.log(x.sum(dim=-1, keepdim=True))
    logits, log_theta = torch.randn(32, 20), torch.randn(20)
    ours = softmax_nb_log_likelihood(x, logits, log_library, log_theta)
    expected = reference_nb(x.double(), logits.double(), log_library.double(), log_theta.double())
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5, atol=1e-3)
    with pytest.raises(ValueError, match="reduction"):
        softmax_nb_log_likelihood(x, logits, log_library, log_theta, reduction="mean")


def test_fused_nb_terms_pass_gradcheck_including_the_library():
    x = random_counts(6, 5, dtype=torch.float64)
    logits = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    log_library = torch.randn(6, 1, dtype=torch.float64, requires_grad=True)
    log_theta = torch.randn(5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, b, c: _SoftmaxNBTerms.apply(x, a, b, c), (logits, log_library, log_theta)
    )


def test_log_rising_factorial_sum_matches_lgamma_for_small_large_and_fractional_counts():
    x = random_counts(40, 30, dtype=torch.float64)
    assert x.max() > RISING_FACTORIAL_TABLE
    log_theta = torch.randn(30, dtype=torch.float64, requires_grad=True)

    def direct(values):
        theta = torch.exp(log_theta)
        return (torch.lgamma(values + theta) - torch.lgamma(theta)).sum()

    one_fraction = x.clone()
    one_fraction[3, 4] += 0.25
    for values in (x, x + 0.5, one_fraction, torch.zeros_like(x)):
        ours = log_rising_factorial_sum(values, torch.exp(log_theta))
        expected = direct(values)
        torch.testing.assert_close(ours, expected, rtol=1e-10, atol=1e-8)
        (grad,) = torch.autograd.grad(ours, log_theta)
        (expected_grad,) = torch.autograd.grad(expected, log_theta)
        torch.testing.assert_close(grad, expected_grad, rtol=1e-8, atol=1e-8)


def test_log_rising_factorial_sum_from_count_keys_equals_the_dense_histogram():
    x = random_counts(40, 30, dtype=torch.float64)
    x[5] = 0
    x[6, 3] = 3 * RISING_FACTORIAL_TABLE
    rows, genes = x.nonzero(as_tuple=True)
    keys = genes.int() * (RISING_FACTORIAL_TABLE + 1)
    keys += x[rows, genes].clamp(max=RISING_FACTORIAL_TABLE).int()
    keys = torch.cat((keys, torch.tensor([0, 7 * (RISING_FACTORIAL_TABLE + 1)])))  # stored 0s
    log_theta = torch.randn(30, dtype=torch.float64, requires_grad=True)
    from_keys = log_rising_factorial_sum(x, torch.exp(log_theta), keys)
    from_counts = log_rising_factorial_sum(x, torch.exp(log_theta))
    torch.testing.assert_close(from_keys, from_counts, rtol=1e-12, atol=0)
    (grad,) = torch.autograd.grad(from_keys, log_theta)
    (expected_grad,) = torch.autograd.grad(from_counts, log_theta)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-12, atol=1e-12)


def test_gaussian_kl_matches_torch_distributions():
    generator = torch.Generator().manual_seed(2)
    q_mean, p_mean = (
        torch.randn(10, 4, generator=generator),
        torch.randn(10, 4, generator=generator),
    )
    q_var = torch.rand(10, 4, generator=generator) + 0.1
    p_var = torch.rand(10, 4, generator=generator) + 0.1
    expected = kl_divergence(Normal(q_mean, q_var.sqrt()), Normal(p_mean, p_var.sqrt())).sum(-1)
    torch.testing.assert_close(gaussian_kl(q_mean, q_var, p_mean, p_var), expected)
    standard = kl_divergence(Normal(q_mean, q_var.sqrt()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(gaussian_kl(q_mean, q_var), standard)
    torch.testing.assert_close(
        gaussian_kl(q_mean, q_var, None, p_var)[0],
        (kl_divergence(Normal(q_mean, q_var.sqrt()), Normal(0.0, p_var.sqrt())).sum(-1)[0]),
    )


def test_total_correlation_is_near_zero_for_independent_blocks_and_positive_when_coupled():
    generator = torch.Generator().manual_seed(3)
    n = 512
    independent = torch.randn(n, 2, generator=generator)
    shared = torch.randn(n, 1, generator=generator)
    coupled = torch.cat((shared, shared + 0.05 * torch.randn(n, 1, generator=generator)), dim=1)
    var = torch.full((n, 2), 0.01)
    groups = [slice(0, 1), slice(1, 2)]
    tc_independent = minibatch_total_correlation(independent, independent, var, groups, n)
    tc_coupled = minibatch_total_correlation(coupled, coupled, var, groups, n)
    assert torch.isfinite(tc_independent)
    assert tc_coupled > tc_independent + 1.0
