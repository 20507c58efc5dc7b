"""Which cells to label next: unlabelled training cells by classifier uncertainty,
spread over the clusters of the latent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omics_vae.evaluation.suggestions import (
    classifier_uncertainty,
    diverse_most_uncertain,
    suggest_cells_to_label,
)
from omics_vae.processing.new_labels import with_new_labels
from omics_vae.schemas.evaluation import SuggestionParams
from tests.evaluation.conftest import CELL_TYPES, N_CELLS


def with_classifier(embeddings, unsure_type: str = "B"):
    """Embeddings of a model predicting obs['label'], half of whose cells are unlabelled:
    sure of every cell but those of ``unsure_type``, which it splits between two labels."""
    truth = embeddings.obs["cell_type"].astype(str).to_numpy()
    probabilities = np.full((N_CELLS, 3), 0.05)
    probabilities[np.arange(N_CELLS), [CELL_TYPES.index(t) for t in truth]] = 0.9
    unsure = truth == unsure_type
    probabilities[unsure] = [0.5, 0.45, 0.05]
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    label = truth.astype(object)
    label[::2] = np.nan
    embeddings.obs["label"] = pd.Categorical(label)
    embeddings.obs["predicted_label"] = pd.Categorical(
        np.asarray(CELL_TYPES)[probabilities.argmax(axis=1)], categories=list(CELL_TYPES)
    )
    embeddings.obs["predicted_label_probability"] = probabilities.max(axis=1)
    embeddings.obsm["predicted_label_probabilities"] = probabilities.astype(np.float32)
    embeddings.uns["embedding"]["label_key"] = "label"
    return embeddings


def test_unlabelled_training_cells_are_suggested_most_uncertain_first(embeddings):
    embeddings = with_classifier(embeddings)
    params = SuggestionParams(n_cells=10, n_clusters=3)

    table, figure = suggest_cells_to_label(embeddings, params)

    assert len(table) == 10
    assert table["rank"].tolist() == list(range(1, 11))
    obs = embeddings.obs.loc[table["cell_id"]]
    assert obs["label"].isna().all()
    assert (obs["split"] == "train").all()
    assert (table["label"] == "").all()  # for the expert to fill in
    # The first pick of every cluster is its most uncertain cell: B's come first.
    assert obs["cell_type"].iloc[0] == "B"
    assert {"predicted", "runner_up", "batch"} <= set(table.columns)
    assert figure.get_suptitle().startswith("Cells to label next: 10 of")


def test_suggestions_spread_over_clusters_instead_of_the_one_unsure_type(embeddings):
    embeddings = with_classifier(embeddings)
    table, _ = suggest_cells_to_label(embeddings, SuggestionParams(n_cells=9, n_clusters=3))
    obs = embeddings.obs.loc[table["cell_id"]]
    # Pure uncertainty sampling would take nine B cells; one per cluster in turn does not.
    assert obs["cell_type"].nunique() == 3
    assert table["cluster"].nunique() == 3


def test_cells_labelled_since_are_not_suggested_again(embeddings):
    embeddings = with_classifier(embeddings)
    params = SuggestionParams(n_cells=10, n_clusters=3)
    first, _ = suggest_cells_to_label(embeddings, params)
    expert = first.assign(label="B").loc[:, ["cell_id", "label"]]

    relabelled = with_new_labels(embeddings, expert, "label")
    second, _ = suggest_cells_to_label(relabelled, params)

    assert not set(first["cell_id"]) & set(second["cell_id"])


def test_nothing_is_suggested_without_a_classifier_or_unlabelled_cells(embeddings):
    table, figure = suggest_cells_to_label(embeddings, SuggestionParams())
    assert table.empty
    assert "predicts no labels" in figure.axes[0].texts[0].get_text()

    labelled = with_classifier(embeddings)
    labelled.obs["label"] = labelled.obs["cell_type"]
    table, figure = suggest_cells_to_label(labelled, SuggestionParams())
    assert table.empty
    assert "every training cell has a label" in figure.axes[0].texts[0].get_text()


def test_entropy_and_margin_put_sure_cells_at_zero_and_a_tie_at_one():
    probabilities = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    entropy = classifier_uncertainty(probabilities, "entropy")
    margin = classifier_uncertainty(probabilities, "margin")
    assert entropy[0] == pytest.approx(0, abs=1e-9)
    assert entropy[2] == pytest.approx(1)
    assert margin.tolist() == pytest.approx([0.0, 1.0, 1.0])


def test_clusters_take_turns_from_their_most_uncertain_cell():
    uncertainty = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.5])
    clusters = np.array([0, 0, 0, 1, 1, 2])
    chosen = diverse_most_uncertain(np.arange(6), uncertainty, clusters, n_cells=5)
    assert chosen.tolist() == [0, 5, 3, 1, 4]
