"""The labelling loop as a user runs it on pbmc_3chem with half of one chemistry's labels
hidden: the evaluation suggests cells to label, the expert's labels go into
data/01_raw/new_labels.csv, and the next run trains with them and shows the change."""

from __future__ import annotations

import subprocess

import anndata as ad
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import QUICK_METRICS, SHARED_DATA, _copy_project, use_pbmc_3chem, write_yaml
from tests.kedro_session import run_in_process

HIDDEN_CHEMISTRY = "3pv2"
N_SUGGESTED = 30
FAST = {
    "training.trainer.max_epochs": 3,
    "training.trainer.num_threads": 1,
    "evaluation.baselines.harmony": False,
    "evaluation.metrics": QUICK_METRICS,
    "evaluation.label_suggestions.n_cells": N_SUGGESTED,
}
STAGES = ("training", "embedding", "evaluation")
# docs/how-to/label-cells.md: the newest suggestions become the expert's file.
COPY_SUGGESTIONS = (
    'cp "$(ls -d data/08_reporting/label_suggestions.csv/*/ | tail -1)label_suggestions.csv" '
    "data/01_raw/new_labels.csv"
)


def _latest(project, entry):
    return sorted((project / "data" / entry).glob("*/*"))[-1]


@pytest.fixture(scope="module")
def labelling_project(tmp_path_factory):
    """Round 1 with half of one chemistry's labels hidden; round 2 with the first
    round's suggestions labelled by the truth, as an expert would."""
    project = _copy_project(tmp_path_factory.mktemp("labelling") / "project")
    cells = ad.read_h5ad(SHARED_DATA / "pbmc_3chem.h5ad")
    label = cells.obs["cell_type"].astype(object).copy()
    chemistry = cells.obs["chemistry"].to_numpy()
    hidden = np.flatnonzero(chemistry == HIDDEN_CHEMISTRY)[::2]
    label.iloc[hidden] = np.nan
    cells.obs["label"] = pd.Categorical(label)
    raw = project / "data" / "01_raw" / "partly_labelled.h5ad"
    cells.write_h5ad(raw)
    use_pbmc_3chem(project, raw)
    local = project / "conf" / "local"
    write_yaml(local / "parameters_training.yml", {"training": {"covariates": {"bio": ["label"]}}})
    run_in_process(project, "data_processing", *STAGES, params=FAST)
    first = {
        name: pd.read_csv(_latest(project, f"08_reporting/{name}.csv"))
        for name in ("label_suggestions", "labelling_rounds")
    }
    truth = ad.read_h5ad(_latest(project, "05_model_input/model_input.h5ad")).obs["cell_type"]
    # The expert's file: the suggestions copied as the how-to says, 20 labels filled in.
    subprocess.run(["bash", "-c", COPY_SUGGESTIONS], cwd=project, check=True)
    new_labels = project / "data" / "01_raw" / "new_labels.csv"
    expert = pd.read_csv(new_labels, dtype=str, keep_default_na=False)
    expert.loc[:19, "label"] = truth.loc[expert.loc[:19, "cell_id"]].astype(str).to_numpy()
    expert.to_csv(new_labels, index=False)
    run_in_process(project, *STAGES, params=FAST)
    return project, first, expert.loc[:19]


@pytest.mark.e2e
def test_the_suggested_cells_are_unlabelled_training_cells_spread_over_clusters(
    labelling_project,
):
    project, first, _ = labelling_project
    suggestions = first["label_suggestions"]
    assert len(suggestions) == N_SUGGESTED
    assert list(suggestions["rank"]) == list(range(1, N_SUGGESTED + 1))
    assert suggestions["label"].isna().all()  # left for the expert
    model_input = ad.read_h5ad(_latest(project, "05_model_input/model_input.h5ad"))
    obs = model_input.obs.loc[suggestions["cell_id"]]
    assert obs["label"].isna().all()
    assert (obs["split"] == "train").all()
    assert (obs["chemistry"] == HIDDEN_CHEMISTRY).all()
    assert suggestions["cluster"].nunique() >= 5
    assert suggestions["uncertainty"].between(0, 1).all()
    assert (project / "data" / "08_reporting" / "label_suggestions.png").is_dir()


@pytest.mark.e2e
def test_the_next_run_trains_with_the_new_labels_and_shows_the_change(labelling_project):
    project, first, labelled = labelling_project
    rounds = pd.read_csv(_latest(project, "08_reporting/labelling_rounds.csv"))
    assert len(first["labelling_rounds"]) == 1
    assert list(rounds["round"]) == [1, 2]
    assert rounds["run"].iloc[-1] == "this run"
    before, after = rounds["labelled_training_cells"]
    assert after == before + len(labelled)
    assert rounds["held_out_accuracy"].between(0, 1).all()
    assert rounds["hidden_label_accuracy"].notna().all()

    card = yaml.safe_load(_latest(project, "06_models/model_card.yml").read_text())
    assert card["labels"] == {"key": "label", "n_labelled_train": int(after)}
    embeddings = ad.read_h5ad(_latest(project, "07_model_output/embeddings.h5ad"))
    given = embeddings.obs.loc[labelled["cell_id"], "label"].astype(str)
    assert list(given) == list(labelled["label"])
    # The cells just labelled are not suggested again.
    second = pd.read_csv(_latest(project, "08_reporting/label_suggestions.csv"))
    assert not set(second["cell_id"]) & set(labelled["cell_id"])

    mlflow.set_tracking_uri(f"sqlite:///{project / 'mlflow.db'}")
    try:
        runs = mlflow.search_runs(search_all_experiments=True, order_by=["start_time"])
    finally:
        mlflow.set_tracking_uri(None)
    assert (runs["status"] == "FINISHED").all()
    fingerprints = runs["tags.training_fingerprint"].dropna()
    assert fingerprints.nunique() == 2  # more labels: another model, not a reused one
