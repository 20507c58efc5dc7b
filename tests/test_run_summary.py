"""The summary a finished run prints, from facts (omics_vae.run_summary)."""

from __future__ import annotations

import pandas as pd

from omics_vae.run_summary import (
    WIDTH,
    RunFacts,
    format_run_summary,
    label_transfer_headline,
    paired_headline,
    single_cell_headline,
    training_line,
)

VERSION = "2026-12-02T02.45.09.749Z"


def _versions(*pairs: tuple[str, str]) -> list[tuple[str, str]]:
    return [(name, f"{folder}/{name}.x/{VERSION}/{name}.x") for name, folder in pairs]


def test_a_training_says_what_it_did_and_a_reuse_where_it_came_from():
    trained = {"model": "invae", "epochs": 132, "best_val_loss": 609.6, "wall_time_s": 54.1}
    reused = {**trained, "reused_from_run": "abc123"}

    assert training_line("", trained) == "Trained invae: 132 epochs, best val loss 609.60, 54 s"
    assert training_line("latent__seed_0", reused) == (
        "latent__seed_0: Reused invae from MLflow run abc123 (best val loss 609.60)"
    )


def test_headlines_put_the_model_first_then_its_baselines():
    scib = pd.DataFrame(
        {
            "embedding": ["pca", "harmony", "invae"],
            "role": ["baseline", "baseline", "model"],
            "Total": [0.52, 0.61, 0.7],
        }
    )
    imputation = pd.DataFrame(
        {
            "direction": ["rna_to_protein"] * 2,
            "method": ["ridge", "joint_vae"],
            "pearson": [0.55, 0.6],
        }
    )

    assert single_cell_headline(scib) == (
        "scib total (higher is better): invae 0.700 | pca 0.520 | harmony 0.610"
    )
    assert paired_headline(imputation) == "rna_to_protein Pearson r: joint_vae 0.600 | ridge 0.550"


def test_label_transfer_reports_cells_the_classifier_did_not_fit():
    table = pd.DataFrame(
        {
            "cells": ["labelled, held out", "labelled, trained on", "hidden label"],
            "n_cells": [240, 960, 1200],
            "accuracy": [0.9125, 0.99, 0.8],
        }
    )
    assert label_transfer_headline(table) == (
        "label transfer accuracy: labelled, held out 0.912 (240 cells) | "
        "hidden label 0.800 (1,200 cells)"
    )
    no_classifier = pd.DataFrame({"cells": ["none"], "n_cells": [0], "accuracy": [float("nan")]})
    assert label_transfer_headline(no_classifier) == ""


def test_the_summary_groups_versions_by_folder_within_the_width():
    names = [(f"report_with_a_long_name_{i}", "data/08_reporting") for i in range(12)]
    facts = RunFacts(
        pipelines=["__default__"],
        trainings=[(f"v{i}", {"model": "invae", "epochs": 2}) for i in range(10)],
        versions=_versions(("model", "data/06_models"), *names),
        mlflow_run_id="f" * 32,
        mlflow_experiment="omics_vae",
    )

    text = format_run_summary(facts)
    lines = text.splitlines()

    assert max(map(len, lines)) <= WIDTH
    assert f"New versions, saved as version {VERSION}" in text
    assert "  data/06_models     model" in lines
    assert all(name in text for name, _ in names)  # wrapped, never cut
    assert "... and 2 more trainings" in lines
    assert "v9" not in text
    assert f"MLflow run {'f' * 32} (experiment 'omics_vae')" in lines


def test_a_run_that_saved_nothing_says_so():
    text = format_run_summary(RunFacts(pipelines=["training"]))

    assert "No new versions were saved." in text
    assert "MLflow run" not in text
