"""Parameter blocks are validated once, against their schemas, naming the bad key; an
unknown block is refused; an error in a project block is never blamed on a sweep variant."""

import pytest
import yaml

from omics_vae import settings
from omics_vae.context import parameter_schemas, validated_parameters
from omics_vae.params import InvalidParametersError
from omics_vae.schemas.training import TrainingParams
from omics_vae.sweeps import SweepConfigLoader, SweepError, sweep_parameters
from tests.conftest import PROJECT_ROOT

# The values conf/base listed before the models' declarations became the one source of
# their defaults (the code defaults of scvi_vae and joint_vae differed from them then).
LISTED_BEFORE = {
    "training.hyperparameters.invae": {
        "n_latent_bio": 30,
        # Changed on purpose (issue 13): null is 5 with a biological label, as before,
        # and 0 without one (test_models_and_labels_defaults).
        "n_latent_tech": None,
        "n_hidden": 128,
        "n_layers": 2,
        "dropout": 0.1,
        "batch_norm": True,
        "learn_prior_mean": True,
        "beta_max": 1.0,
        "kl_warmup_epochs": 10,
        "tc_weight": 0.0,
    },
    "training.hyperparameters.scvi_vae": {
        "n_latent": 30,
        "n_hidden": 128,
        "n_layers": 2,
        "dropout": 0.1,
        "beta_max": 1.0,
        "kl_warmup_epochs": 10,
    },
    "paired.training.hyperparameters": {
        "n_latent": 20,
        "n_hidden": 64,
        "n_layers": 1,
        "dropout": 0.1,
        "decoder_dropout": 0.0,
        "batch_norm": True,
        "layer_norm": False,
        "activation": "relu",
        "likelihood": "gaussian",
        "prior": "standard",
        "n_pseudo_inputs": 50,
        "iwae_samples": 1,
        "alignment": "mean_distance",
        "input_noise": 0.5,
        "self_weight_a": 1.0,
        "self_weight_b": 1.0,
        "cross_weight": 1.0,
        "joint_weight": 1.0,
        "alignment_weight": 1.0,
        "beta_max": 1.0,
        "kl_warmup_epochs": 10,
    },
}


def _base_parameters() -> dict:
    params = {}
    for path in sorted((PROJECT_ROOT / "conf" / "base").glob("parameters*.yml")):
        params.update(yaml.safe_load(path.read_text()) or {})
    return params


def _with_variants(params: dict) -> dict:
    """As the project's config loader gives them: each sweep variant's blocks added."""
    return {**params, **sweep_parameters(params)}


def test_committed_parameters_match_their_schemas():
    params = _base_parameters()
    validated = validated_parameters(_with_variants(params))
    assert set(parameter_schemas()) <= set(params)
    for section, schema in parameter_schemas().items():
        assert isinstance(validated[section], schema)
    # A variant's blocks are validated objects too; its sweep record stays as written.
    variant = validated["latent__scvi_baseline__seed_0"]
    assert isinstance(variant["training"], TrainingParams)
    assert variant["training"].model == "scvi_vae"
    assert variant["sweep"]["group"] == "latent__scvi_baseline"


def test_unknown_key_is_named_with_its_full_path():
    params = _base_parameters()
    params["data_processing"]["qc"]["min_genes_per_cel"] = 10
    with pytest.raises(InvalidParametersError, match=r"data_processing\.qc\.min_genes_per_cel"):
        validated_parameters(params)


def test_wrong_type_is_named_with_the_value_given():
    params = _base_parameters()
    params["data_processing"]["hvg"]["n_top_genes"] = "many"
    with pytest.raises(InvalidParametersError) as error:
        validated_parameters(params)
    assert "data_processing.hvg.n_top_genes" in str(error.value)
    assert "'many'" in str(error.value)


def test_split_fractions_must_sum_to_one():
    params = _base_parameters()
    params["data_processing"]["split"].update(train=0.9, val=0.2, test=0.1)
    with pytest.raises(InvalidParametersError, match="train \\+ val \\+ test must equal 1"):
        validated_parameters(params)


def test_a_misspelt_top_level_block_is_refused_with_the_block_it_resembles():
    # `--params trainng.trainer.max_epochs=1` used to train the default model for minutes.
    params = {**_base_parameters(), "trainng": {"trainer": {"max_epochs": 1}}}
    with pytest.raises(InvalidParametersError) as error:
        validated_parameters(params)
    assert "'trainng' is not a parameter block of this project. Did you mean 'training'?" in (
        str(error.value)
    )


def test_a_wrong_type_in_a_project_block_is_blamed_on_that_block_not_on_a_variant():
    # `--params training.trainer.max_epochs=abc` used to be reported against the first
    # sweep variant, naming a file that does not exist.
    params = _base_parameters()
    params["training"]["trainer"]["max_epochs"] = "abc"
    with pytest.raises(InvalidParametersError) as error:
        validated_parameters(_with_variants(params))
    assert not isinstance(error.value, SweepError)
    assert "training.trainer.max_epochs" in str(error.value)
    assert "latent__" not in str(error.value)


def test_a_variant_whose_override_is_invalid_is_blamed_with_its_override():
    params = _base_parameters()
    params["sweeps"] = {"demo": {"grid": {"training.trainer.batch_size": [1]}}}
    with pytest.raises(SweepError) as error:
        validated_parameters(_with_variants(params))
    message = str(error.value)
    assert "Variant 'demo__batch_size_1__seed_0' of sweep 'demo'" in message
    assert "{'training.trainer.batch_size': 1}" in message
    assert "training.trainer.batch_size: Input should be greater than 1" in message


def test_force_retrain_must_be_a_switch():
    params = {**_base_parameters(), "force_retrain": "yes"}
    with pytest.raises(InvalidParametersError, match="'force_retrain' must be a bool"):
        validated_parameters(params)


def _at(params: dict, dotted: str):
    for part in dotted.split("."):
        params = params[part]
    return params


def test_models_and_labels_defaults():
    from omics_vae.models.hyperparameters import InVAEHyperparameters

    declared = InVAEHyperparameters()
    assert (declared.latent_tech(labelled=True), declared.latent_tech(labelled=False)) == (5, 0)
    assert InVAEHyperparameters(n_latent_tech=3).latent_tech(labelled=False) == 3


def test_the_config_loader_writes_out_every_declared_default_as_documented_before():
    loader = SweepConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"), **settings.CONFIG_LOADER_ARGS
    )
    params = loader["parameters"]
    for block, listed in LISTED_BEFORE.items():
        # The YAML repeats none of them; the effective values are the same as before.
        assert _at(_base_parameters(), block) == {}, block
        effective = _at(params, block)
        assert {key: effective[key] for key in listed} == listed, block
    # And what the YAML leaves out entirely comes from the declaration.
    assert _at(params, "training.hyperparameters.scvi_vae")["batch_norm"] == "both"
    validated_parameters(params)
