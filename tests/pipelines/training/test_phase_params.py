"""training.phases: validation on load, the node's plan, summary, history and figure."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.patches import Rectangle

from omics_vae.models import InVAE
from omics_vae.params import InvalidParametersError, validate_section
from omics_vae.pipelines.training.nodes import make_model_card
from omics_vae.schemas.training import (
    TrainingParams,
    build_plan,
    default_hyperparameters,
    probe_model,
)
from omics_vae.training.fitting import TrainingDryRun, TrainingInputError
from omics_vae.training.reports import history_to_metrics, plot_loss_curves
from omics_vae.training.single_cell import train_model
from tests.conftest import validated_block

THREE_PHASES = [
    {"name": "warmup", "loss": {"beta": 0.0}, "until": {"epochs": 2}},
    {
        "name": "full",
        "loss": {"kl_weight": {"start": 0.5, "end": 1.0}},
        "until": {"plateau": {"patience": 1, "min_delta": 1.0e9}, "max_epochs": 3},
    },
    {"name": "decoder", "trainable": ["decoder"], "optimizer": {"args": {"lr": 1.0e-4}}},
]


@pytest.fixture
def phased_params(training_params):
    params = copy.deepcopy(training_params)
    params["trainer"]["num_threads"] = 1
    params["phases"] = copy.deepcopy(THREE_PHASES)
    params["phase_defaults"] = {"until": {"epochs": 1}, "optimizer": {"args": {"lr": 2.0e-3}}}
    return params


def test_phases_inherit_defaults_and_the_plain_optimiser(phased_params):
    config = validate_section("training", TrainingParams, phased_params)
    plan = build_plan(config, probe_model(config))

    warmup, full, decoder = plan.phases
    assert warmup.trainable == (
        "encoder",
        "decoder",
        "dispersion",
        "prior_bio",
        "prior_tech",
        "classifier",
    )
    assert warmup.optimizer.name == "adam"
    assert warmup.optimizer.args == {"lr": 2.0e-3, "weight_decay": 1.0e-6}
    assert warmup.loss["kl_weight"].end == 0.0  # `beta` is the KL weight
    assert decoder.trainable == ("decoder",)
    assert decoder.optimizer.args["lr"] == 1.0e-4
    assert decoder.until.epochs == 1  # from phase_defaults
    assert full.until.kind == "plateau"
    assert full.until.metric == "val/loss"
    assert plan.max_epochs == 2 + 3 + 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p[2].update(trainable=["decodr"]), r"phases\[2\] \(decoder\)\.trainable"),
        (lambda p: p[1].update(frozen=["encodr"]), r"phases\[1\] \(full\)\.frozen"),
        (
            lambda p: p[0].update(optimizer={"name": "adamax"}),
            r"phases\[0\] \(warmup\)\.optimizer\.name",
        ),
        (
            lambda p: p[0].update(scheduler={"name": "exponential"}),
            r"phases\[0\] \(warmup\)\.scheduler\.name",
        ),
        (
            lambda p: p[0].update(until={"metric": "train/loss", "below": 1.0}),
            r"phases\[0\] \(warmup\)\.until\.metric: 'train/loss' is never logged",
        ),
        (lambda p: p[2].update(trainable=[]), r"phases\[2\] \(decoder\)\.trainable: .*no param"),
        (
            lambda p: p[0].update(until={"epochs": 2, "metric": "val/loss"}),
            "exactly one criterion",
        ),
    ],
)
def test_bad_phases_fail_on_load_naming_phase_and_field(phased_params, change, message):
    change(phased_params["phases"])
    with pytest.raises(InvalidParametersError, match=message):
        validate_section("training", TrainingParams, phased_params)


def test_a_phase_without_until_anywhere_is_refused(phased_params):
    phased_params["phase_defaults"] = {}
    with pytest.raises(InvalidParametersError, match=r"phases\[2\] \(decoder\)\.until: missing"):
        validate_section("training", TrainingParams, phased_params)


def test_phases_train_through_the_node_and_reach_summary_history_metrics_and_figure(
    model_input, phased_params
):
    _, history, summary = train_model(model_input, phased_params)

    assert list(history["phase"]) == [0, 0, 1, 1, 2]
    assert list(history["phase_name"]) == ["warmup", "warmup", "full", "full", "decoder"]
    # A phase that sets no KL weight continues the run's KL warm-up (epoch 4 of 10).
    np.testing.assert_allclose(history["kl_weight"], [0.0, 0.0, 0.5, 0.75, 0.4], rtol=1e-6)
    assert [(p["phase"], p["start_epoch"], p["end_epoch"]) for p in summary["phases"]] == [
        ("warmup", 0, 1),
        ("full", 2, 3),
        ("decoder", 4, 4),
    ]
    assert all(p["reason"] for p in summary["phases"])
    assert summary["epochs"] == 5

    card = make_model_card(summary, validated_block("training", phased_params), history)
    assert card["training"]["phases"] == summary["phases"]
    # The card records every hyperparameter of the model trained, defaults included.
    assert card["parameters"]["hyperparameters"] == {
        "invae": {**default_hyperparameters(InVAE), "n_hidden": 16}
    }
    assert card["training"]["final_metrics"]["phase"] == 2

    metrics = history_to_metrics(history)
    assert [point["value"] for point in metrics["phase"]] == [0, 0, 1, 1, 2]
    assert "phase_name" not in metrics

    figure = plot_loss_curves(history)
    shaded = [p for p in figure.axes[0].patches if isinstance(p, Rectangle)]
    assert [(p.get_x(), p.get_width()) for p in shaded] == [(-0.5, 2), (1.5, 2), (3.5, 1)]
    assert {t.get_text() for t in figure.axes[0].texts} == {"warmup", "full", "decoder"}


def test_a_run_without_phases_is_one_phase_and_equals_it_written_out(model_input, training_params):
    training_params["trainer"].update(num_threads=1, max_epochs=6, early_stopping_patience=2)
    plain, history, summary = train_model(model_input, training_params)
    one_phase = {
        **training_params,
        "phases": [
            {
                "name": "train",
                "trainable": "all",
                "until": {"plateau": {"metric": "val/loss", "patience": 2}, "max_epochs": 6},
            }
        ],
    }
    written_out, written_history, written_summary = train_model(model_input, one_phase)

    for (name, a), b in zip(
        plain.state_dict().items(), written_out.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    pd.testing.assert_frame_equal(history, written_history)
    assert summary["phases"] == written_summary["phases"]
    assert [phase["phase"] for phase in summary["phases"]] == ["train"]
    assert set(history["phase_name"]) == {"train"}
    # One phase: nothing to tell apart in the loss curves.
    assert not plot_loss_curves(history).axes[0].patches


def test_dry_run_prints_the_plan_and_stops_without_error(model_input, phased_params, capsys):
    phased_params["dry_run"] = True
    with pytest.raises(TrainingDryRun) as stopped:
        train_model(model_input, phased_params)
    assert stopped.value.code == 0
    printed = capsys.readouterr().out
    assert "warmup" in printed
    assert "decoder" in printed
    assert "kl_weight=0" in printed
    # The decoder phase sets no KL weight: it carries the run's KL warm-up.
    lines = printed.splitlines()
    decoder = next(i for i, line in enumerate(lines) if line.startswith("2 | decoder"))
    assert "loss weights  kl_weight=0→1 over run epochs 0-10" in lines[decoder + 3]
    assert "nothing was trained" in printed


def test_a_part_without_parameters_for_this_data_is_refused_before_training(
    model_input, phased_params
):
    # Without biological covariates inVAE's bio prior is fixed: nothing to train there.
    phased_params["covariates"]["bio"] = []
    phased_params["phases"][2]["trainable"] = ["prior_bio"]
    with pytest.raises(TrainingInputError, match=r"phases\[2\] \(decoder\)\.trainable"):
        train_model(model_input, phased_params)
