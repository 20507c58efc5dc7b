"""Building blocks: MLP covariate injection, encoder, decoder, priors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from omics_vae.models.components import (
    MLP,
    ConditionalGaussianPrior,
    FastLinear,
    GaussianEncoder,
    GeneDispersion,
    HiddenLayers,
    NBDecoder,
    linear,
    nb_log_mean,
    onednn_usable,
)
from omics_vae.models.hyperparameters import norm_flags


def linear_in_features(module: nn.Module) -> list[int]:
    return [m.in_features for m in module.modules() if isinstance(m, nn.Linear)]


def test_mlp_injects_covariates_into_the_first_or_every_layer():
    x, covariates = torch.randn(8, 10), torch.randn(8, 3)
    layers = HiddenLayers(n_hidden=32, n_layers=3)
    first = MLP(10, 16, layers, n_covariates=3, inject_covariates=False)
    every = MLP(10, 16, layers, n_covariates=3, inject_covariates=True)
    assert linear_in_features(first) == [13, 32, 32]
    assert linear_in_features(every) == [13, 35, 35]
    assert first(x, covariates).shape == (8, 16)
    assert every(x, covariates).shape == (8, 16)
    plain = MLP(10, 16, HiddenLayers(n_layers=1))
    assert plain(x).shape == (8, 16)
    with pytest.raises(ValueError, match="n_layers"):
        MLP(10, 16, HiddenLayers(n_layers=0))


def test_a_wide_first_layer_gives_the_same_outputs_without_the_concatenation():
    """Without autograd, a FastLinear first layer multiplies the inputs and the
    covariates apart (no concatenated copy); the outputs are those of the concatenation."""
    torch.manual_seed(0)
    mlp = MLP(1000, 16, HiddenLayers(n_hidden=128, n_layers=2), n_covariates=3).eval()
    assert isinstance(mlp.layers[0][0], FastLinear)
    x = torch.rand(64, 1000)
    covariates = torch.eye(3)[torch.randint(0, 3, (64,))]
    concatenated = mlp(x, covariates)  # with autograd: the concatenation
    with torch.no_grad():
        split = mlp(x, covariates)
    torch.testing.assert_close(split, concatenated.detach(), rtol=1e-5, atol=1e-5)


def test_mlp_layer_recipe_follows_scvi():
    mlp = MLP(4, 6, HiddenLayers(n_layers=1, batch_norm=True, layer_norm=True, dropout=0.2))
    kinds = [type(m) for m in mlp.layers[0]]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.LayerNorm, nn.ReLU, nn.Dropout]
    batch_norm = mlp.layers[0][1]
    assert (batch_norm.momentum, batch_norm.eps) == (0.01, 0.001)
    bare = MLP(4, 6, HiddenLayers(n_layers=1, batch_norm=False, dropout=0.0, activation="elu"))
    assert [type(m) for m in bare.layers[0]] == [nn.Linear, nn.ELU]
    with pytest.raises(ValueError, match="unknown activation"):
        MLP(4, 6, HiddenLayers(activation="swishy"))


def test_norm_flags():
    assert norm_flags(True) == (True, True)
    assert norm_flags("encoder") == (True, False)
    assert norm_flags("decoder") == (False, True)
    assert norm_flags("none") == (False, False)
    with pytest.raises(ValueError, match="placement"):
        norm_flags("everywhere")  # type: ignore[arg-type]


def test_gaussian_encoder_gives_positive_finite_variances():
    encoder = GaussianEncoder(20, 5, HiddenLayers(n_hidden=16, n_layers=2), n_covariates=2)
    x = torch.randn(12, 20) * 100
    mean, var = encoder(x, torch.randn(12, 2))
    assert mean.shape == var.shape == (12, 5)
    assert torch.isfinite(var).all()
    assert (var >= encoder.var_eps).all()


def test_nb_decoder_log_means_sum_to_the_library():
    decoder = NBDecoder(5, 30, HiddenLayers(n_hidden=16, n_layers=2), n_covariates=2)
    logits = decoder(torch.randn(7, 5), torch.randn(7, 2))
    assert logits.shape == (7, 30)
    log_library = torch.log(torch.full((7, 1), 1234.0))
    torch.testing.assert_close(
        torch.exp(nb_log_mean(logits, log_library)).sum(-1), torch.full((7,), 1234.0)
    )
    assert GeneDispersion(30)().shape == (30,)


def test_prior_without_covariates_is_standard_normal_and_parameter_free():
    prior = ConditionalGaussianPrior(0, 4)
    assert prior.is_standard_normal
    assert list(prior.parameters()) == []
    assert prior(torch.zeros(3, 0)) == (None, None)


# n_layers: the linear maps from the covariates to each output (hidden layers + 1).
@pytest.mark.parametrize(("n_layers", "learn_mean"), [(1, False), (2, False), (2, True)])
def test_conditional_prior_depends_on_covariates(n_layers, learn_mean):
    hidden = HiddenLayers(n_hidden=8, n_layers=n_layers - 1) if n_layers > 1 else None
    prior = ConditionalGaussianPrior(3, 4, hidden, learn_mean=learn_mean)
    covariates = torch.eye(3)
    mean, var = prior(covariates)
    assert var.shape == (3, 4)
    assert (var > 0).all()
    assert not torch.allclose(var[0], var[1])
    assert (mean is not None) == learn_mean
    assert linear_in_features(prior)[0] == 3


@pytest.mark.skipif(not onednn_usable(), reason="this torch build has no oneDNN")
@pytest.mark.parametrize(
    ("n", "n_in", "n_out"), [(17, 300, 250), (64, 2003, 128), (200, 128, 2000)]
)
def test_fast_linear_matches_nn_linear_with_gradients(n, n_in, n_out):
    torch.manual_seed(0)
    fast = FastLinear(n_in, n_out)
    reference = nn.Linear(n_in, n_out)
    reference.load_state_dict(fast.state_dict())
    x = torch.randn(n, n_in, requires_grad=True)
    out, expected = fast(x), reference(x)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-4)
    upstream = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x, fast.weight, fast.bias), upstream)
    expected_grads = torch.autograd.grad(expected, (x, reference.weight, reference.bias), upstream)
    for grad, expected_grad in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-4)


def test_fast_linear_skips_frozen_weights_and_falls_back_off_float32():
    fast = FastLinear(300, 250)
    fast.weight.requires_grad_(False)
    x = torch.randn(4, 300, requires_grad=True)
    fast(x).sum().backward()
    assert fast.weight.grad is None
    assert fast.bias.grad is not None
    double = FastLinear(300, 250).double()
    assert double(torch.randn(4, 300, dtype=torch.float64)).dtype == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fast(torch.randn(4, 300)).dtype == torch.bfloat16


def test_only_large_linear_maps_are_fast():
    assert type(linear(2000, 128)) is FastLinear
    assert type(linear(128, 128)) is nn.Linear
