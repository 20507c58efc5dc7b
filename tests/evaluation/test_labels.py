"""Label transfer: scores of the predicted labels on held-out and hidden-label cells, the
cells the evaluation leaves out, and the confusion figure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from omics_vae.evaluation.labels import label_transfer, transfer_metrics
from omics_vae.evaluation.preparation import prepare_evaluation_cells
from tests.evaluation.conftest import N_CELLS, validated


def with_predictions(embeddings, label_key: str, wrong_every: int = 5):
    """Embeddings whose model predicted ``label_key``: right except every
    ``wrong_every``-th cell, which it calls 'B' with low confidence."""
    truth = embeddings.obs["cell_type"].astype(str).to_numpy()
    predicted = truth.copy()
    predicted[::wrong_every] = "B"
    probability = np.full(N_CELLS, 0.9)
    probability[::wrong_every] = 0.4
    embeddings.obs[f"predicted_{label_key}"] = pd.Categorical(
        predicted, categories=["B", "NK", "T"]
    )
    embeddings.obs[f"predicted_{label_key}_probability"] = probability
    embeddings.uns["embedding"]["label_key"] = label_key
    return embeddings, truth, predicted


def test_held_out_labelled_cells_are_scored_against_their_label(
    embeddings, model_input, parameters
):
    embeddings, truth, predicted = with_predictions(embeddings, "cell_type")
    cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

    table, figure = label_transfer(cells)

    assert list(table["cells"]) == ["labelled, held out", "labelled, trained on"]
    assert table["n_cells"].sum() == N_CELLS
    held_out = (cells.obs["split"] != "train").to_numpy()
    row = table.iloc[0]
    assert row["n_cells"] == held_out.sum()
    assert row["accuracy"] == pytest.approx((truth == predicted)[held_out].mean())
    assert 0 < row["macro_f1"] < 1
    assert row["low_confidence_share"] == pytest.approx(
        (np.arange(N_CELLS) % 5 == 0)[held_out].mean()
    )
    assert "accuracy" in figure.axes[0].get_title()
    metrics = transfer_metrics(table)
    assert metrics["label_transfer/labelled_held_out/accuracy"]["value"] == row["accuracy"]


def test_hidden_labels_are_scored_against_the_cell_type_kept_aside(
    embeddings, model_input, parameters
):
    labels = embeddings.obs["cell_type"].astype(object).to_numpy().copy()
    labels[:100] = "unknown"
    embeddings.obs["label"] = labels
    embeddings, truth, predicted = with_predictions(embeddings, "label")
    embeddings.uns["embedding"]["unlabelled_category"] = "unknown"
    cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

    table, _ = label_transfer(cells)

    rows = table.set_index("cells")
    assert rows.loc["hidden label", "n_cells"] == 100
    labelled = rows.loc[["labelled, held out", "labelled, trained on"], "n_cells"].sum()
    assert labelled == N_CELLS - 100
    hidden = np.arange(N_CELLS) < 100
    expected = (truth[hidden] == predicted[hidden]).mean()
    assert rows.loc["hidden label", "accuracy"] == pytest.approx(expected)


def test_cells_without_a_cell_type_are_left_out_of_the_evaluation(
    embeddings, model_input, parameters
):
    labels = embeddings.obs["cell_type"].astype(object).to_numpy().copy()
    labels[:10] = np.nan
    labels[10:15] = "unknown"
    embeddings.obs["cell_type"] = labels
    model_input.obs["cell_type"] = labels
    embeddings.uns["embedding"]["unlabelled_category"] = "unknown"

    cells = prepare_evaluation_cells(embeddings, model_input, validated(parameters))

    assert cells.n_obs == N_CELLS - 15
    assert not cells.obs_names.isin(embeddings.obs_names[:15]).any()


def test_a_model_without_a_classifier_gets_a_note(evaluation_cells):
    table, figure = label_transfer(evaluation_cells)
    assert list(table["cells"]) == ["none"]
    assert "predicts no labels" in table.loc[0, "note"]
    assert transfer_metrics(table) == {}
    assert figure is not None


def test_query_cells_of_types_the_model_never_saw_are_low_confidence_not_errors():
    import anndata as ad

    from omics_vae.evaluation.labels import query_label_transfer

    obs = pd.DataFrame(
        {
            "cell_type": ["B", "B", "T", "Platelet", "Platelet"],
            "predicted_cell_type": pd.Categorical(["B", "T", "T", "B", "T"], categories=["B", "T"]),
            "predicted_cell_type_probability": [0.9, 0.6, 0.8, 0.3, 0.45],
        },
        index=[f"q{i}" for i in range(5)],
    )
    query = ad.AnnData(np.zeros((5, 0), dtype=np.float32), obs=obs)

    table = query_label_transfer(query, "cell_type").set_index("cells")

    known = table.loc["query, known types"]
    assert known["n_cells"] == 3
    assert known["accuracy"] == pytest.approx(2 / 3)
    unseen = table.loc["query, types the model never saw"]
    assert unseen["n_cells"] == 2
    assert np.isnan(unseen["accuracy"])
    assert unseen["low_confidence_share"] == 1.0
    assert "Platelet" in unseen["note"]
    assert "no labels" in query_label_transfer(query, None).loc[0, "note"]
