"""Building blocks: MLP covariate injection, encoder, decoder, priors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from omics_vae.models.components import (
    MLP,
    ConditionalGaussianPrior,
    GaussianEncoder,
    GeneDispersion,
    NBDecoder,
    nb_log_mean,
    norm_flags,
)


def linear_in_features(module: nn.Module) -> list[int]:
    return [m.in_features for m in module.modules() if isinstance(m, nn.Linear)]


def test_mlp_injects_covariates_into_the_first_or_every_layer():
    x, covariates = torch.randn(8, 10), torch.randn(8, 3)
    first = MLP(10, 16, n_hidden=32, n_layers=3, n_covariates=3, inject_covariates=False)
    every = MLP(10, 16, n_hidden=32, n_layers=3, n_covariates=3, inject_covariates=True)
    assert linear_in_features(first) == [13, 32, 32]
    assert linear_in_features(every) == [13, 35, 35]
    assert first(x, covariates).shape == (8, 16)
    assert every(x, covariates).shape == (8, 16)
    plain = MLP(10, 16, n_layers=1)
    assert plain(x).shape == (8, 16)
    with pytest.raises(ValueError, match="n_layers"):
        MLP(10, 16, n_layers=0)


def test_mlp_layer_recipe_follows_scvi():
    mlp = MLP(4, 6, n_layers=1, batch_norm=True, layer_norm=True, dropout=0.2)
    kinds = [type(m) for m in mlp.layers[0]]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.LayerNorm, nn.ReLU, nn.Dropout]
    batch_norm = mlp.layers[0][1]
    assert (batch_norm.momentum, batch_norm.eps) == (0.01, 0.001)
    bare = MLP(4, 6, n_layers=1, batch_norm=False, dropout=0.0, activation="elu")
    assert [type(m) for m in bare.layers[0]] == [nn.Linear, nn.ELU]
    with pytest.raises(ValueError, match="unknown activation"):
        MLP(4, 6, activation="swishy")


def test_norm_flags():
    assert norm_flags(True) == (True, True)
    assert norm_flags("encoder") == (True, False)
    assert norm_flags("decoder") == (False, True)
    assert norm_flags("none") == (False, False)
    with pytest.raises(ValueError, match="placement"):
        norm_flags("everywhere")  # type: ignore[arg-type]


def test_gaussian_encoder_gives_positive_finite_variances():
    encoder = GaussianEncoder(20, 5, n_hidden=16, n_layers=2, n_covariates=2)
    x = torch.randn(12, 20) * 100
    mean, var = encoder(x, torch.randn(12, 2))
    assert mean.shape == var.shape == (12, 5)
    assert torch.isfinite(var).all()
    assert (var >= encoder.var_eps).all()


def test_nb_decoder_log_means_sum_to_the_library():
    decoder = NBDecoder(5, 30, n_hidden=16, n_layers=2, n_covariates=2)
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


@pytest.mark.parametrize(("n_layers", "learn_mean"), [(1, False), (2, False), (2, True)])
def test_conditional_prior_depends_on_covariates(n_layers, learn_mean):
    prior = ConditionalGaussianPrior(3, 4, n_hidden=8, n_layers=n_layers, learn_mean=learn_mean)
    covariates = torch.eye(3)
    mean, var = prior(covariates)
    assert var.shape == (3, 4)
    assert (var > 0).all()
    assert not torch.allclose(var[0], var[1])
    assert (mean is not None) == learn_mean
    assert linear_in_features(prior)[0] == 3
