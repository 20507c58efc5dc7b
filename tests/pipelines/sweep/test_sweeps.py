"""Expanding sweeps into variants, and the errors of sweeps that cannot be expanded."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from omics_vae.context import validated_parameters
from omics_vae.sweeps import (
    SweepError,
    SweepSpec,
    expand_sweep,
    expand_sweeps,
    sweep_parameters,
)

PROJECT_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def params() -> dict:
    merged = {}
    for name in ("training", "embedding", "evaluation"):
        merged.update(
            yaml.safe_load((PROJECT_ROOT / f"conf/base/parameters_{name}.yml").read_text())
        )
    return merged


def _with_sweep(params: dict, **sweep) -> dict:
    return {**copy.deepcopy(params), "sweeps": {"demo": sweep}}


def test_grid_times_seeds_plus_named_variants_times_seeds():
    spec = SweepSpec(
        grid={
            "training.hyperparameters.invae.n_latent_bio": [10, 20],
            "training.optimizer.learning_rate": [1e-3, 5e-4],
        },
        variants={"scvi": {"training.model": "scvi_vae"}},
        seeds=[0, 1, 2],
    )
    variants = expand_sweep("latent", spec)
    assert len(variants) == (1 + 2 * 2) * 3
    names = [variant.name for variant in variants]
    assert "latent__scvi__seed_2" in names
    assert "latent__n_latent_bio_20__learning_rate_0p0005__seed_1" in names
    assert len(set(names)) == len(names)
    named = next(v for v in variants if v.name == "latent__scvi__seed_1")
    assert named.overrides == {"training.model": "scvi_vae", "training.seed": 1}
    assert named.group == "latent__scvi"
    assert named.seed == 1


def test_base_overrides_reach_every_variant_and_a_variant_wins_over_base():
    spec = SweepSpec(
        base={"training.trainer.batch_size": 64, "training.model": "invae"},
        variants={"scvi": {"training.model": "scvi_vae"}, "plain": {}},
    )
    by_name = {v.name: v for v in expand_sweep("s", spec)}
    assert by_name["s__scvi__seed_0"].overrides["training.model"] == "scvi_vae"
    assert by_name["s__plain__seed_0"].overrides["training.trainer.batch_size"] == 64


def test_a_sweep_with_only_seeds_runs_the_base_parameters():
    names = [v.name for v in expand_sweep("seeds", SweepSpec(seeds=[3, 4]))]
    assert names == ["seeds__base__seed_3", "seeds__base__seed_4"]


def test_variant_blocks_apply_overrides_to_the_project_parameters(params):
    blocks = sweep_parameters(
        _with_sweep(params, grid={"training.hyperparameters.invae.n_latent_bio": [12]}, seeds=[5])
    )
    block = blocks["demo__n_latent_bio_12__seed_5"]
    assert block["training"]["hyperparameters"]["invae"]["n_latent_bio"] == 12
    assert block["training"]["seed"] == 5
    assert block["embedding"] == params["embedding"]
    # Each variant's Lightning checkpoints in a folder of its own, for resume_from: last.
    assert block["training"]["checkpoint_dir"] == (
        f"{params['training']['checkpoint_dir']}/sweeps/demo__n_latent_bio_12__seed_5"
    )
    assert block["sweep"] == {
        "name": "demo",
        "family": "single_cell",
        "variant": "demo__n_latent_bio_12__seed_5",
        "group": "demo__n_latent_bio_12",
        "seed": 5,
        "overrides": {"training.hyperparameters.invae.n_latent_bio": 12},
    }
    # The YAML leaves every hyperparameter to the model's declaration; the variant has
    # them all written out (what its child run logs), the override winning.
    assert params["training"]["hyperparameters"]["invae"] == {}
    assert block["training"]["hyperparameters"]["invae"]["n_latent_tech"] is None
    assert block["training"]["hyperparameters"]["scvi_vae"]["n_latent"] == 30


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        (
            {"grid": {"training.hyperparameters.invae.n_latent_bi": [10]}},
            "'n_latent_bi' is not a key of 'training.hyperparameters.invae'",
        ),
        (
            {"grid": {"data_processing.hvg.n_top_genes": [100]}},
            "a single_cell sweep overrides keys under training, embedding, evaluation",
        ),
        (
            {"grid": {"training.hyperparameters.invae.n_latent_bio": ["ten"]}},
            "invae.n_latent_bio: Input should be a valid integer",
        ),
        (
            {"variants": {"x": {"training.trainer.early_stopping_patience": 2.5}}},
            "2.5 is a float, but the default 20 is a int",
        ),
        (
            {"variants": {"x": {"training.trainer.batch_size": 1}}},
            "training.trainer.batch_size: Input should be greater than 1",
        ),
        ({"grid": {"training.seed": []}}, "sweeps.demo.grid.training.seed is an empty list"),
        (
            {"variants": {"a_b": {}, "a-b": {}}},
            "Two variants of sweep 'demo' expand to the same name 'demo__a_b__seed_0'",
        ),
        ({"seeds": [1, 1]}, "seeds must be distinct"),
        ({"grids": {}}, "sweeps.demo.grids: Extra inputs are not permitted"),
    ],
)
def test_invalid_sweeps_fail_naming_the_problem(params, sweep, message):
    with pytest.raises((SweepError, ValueError)) as error:
        _expanded_and_validated(_with_sweep(params, **sweep))
    assert message in str(error.value)


def _expanded_and_validated(params: dict) -> dict:
    """As the project's context sees them: the variants' blocks added, then validated."""
    return validated_parameters({**params, **sweep_parameters(params)})


def test_two_sweeps_may_not_share_a_variant_name(params):
    both = {**params, "sweeps": {"a": {"variants": {"b__x": {}}}, "a__b": {"variants": {"x": {}}}}}
    with pytest.raises(SweepError, match="both have a variant 'a__b__x__seed_0'"):
        expand_sweeps(both)


def test_a_variant_name_may_not_shadow_a_top_level_parameter(params):
    clash = {**_with_sweep(params, variants={"v": {}}), "demo__v__seed_0": 1}
    with pytest.raises(SweepError, match="clashes with the top-level parameter key"):
        sweep_parameters(clash)


def test_the_shipped_sweep_expands_to_the_documented_variants(params):
    shipped = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_sweeps.yml").read_text())
    variants = expand_sweeps({**params, **shipped})["latent"]
    assert len(variants) == 15
    assert {v.group for v in variants} == {
        "latent__scvi_baseline",
        *(f"latent__n_latent_bio_{size}" for size in (10, 20, 30, 50)),
    }


def test_a_paired_sweep_overrides_the_paired_block_but_not_its_processing(params):
    paired = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_paired.yml").read_text())
    project = {**params, **paired}
    sweep = {"family": "paired", "grid": {"paired.training.hyperparameters.n_latent": [4]}}
    blocks = sweep_parameters({**project, "sweeps": {"p": sweep}})
    block = blocks["p__n_latent_4__seed_0"]
    assert set(block) == {"paired", "sweep"}
    assert block["paired"]["training"]["hyperparameters"]["n_latent"] == 4
    assert block["sweep"]["family"] == "paired"

    processing = {"family": "paired", "grid": {"paired.processing.split.seed": [1]}}
    with pytest.raises(SweepError, match=r"'paired\.processing' is shared by every variant"):
        sweep_parameters({**project, "sweeps": {"p": processing}})
    single_cell_key = {"family": "paired", "grid": {"training.seed": [1]}}
    with pytest.raises(SweepError, match="a paired sweep overrides keys under paired"):
        sweep_parameters({**project, "sweeps": {"p": single_cell_key}})
