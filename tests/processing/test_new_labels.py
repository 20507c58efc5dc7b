"""New labels an expert adds between runs, merged into the label column."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from omics_vae.processing.new_labels import NewLabelsError, labels_given, with_new_labels


@pytest.fixture
def cells() -> ad.AnnData:
    obs = pd.DataFrame(
        {"label": pd.Categorical(["B", None, None, "T", "unknown"])},
        index=[f"c{i}" for i in range(5)],
    )
    return ad.AnnData(np.ones((5, 3), dtype=np.float32), obs=obs)


def _table(rows):
    return pd.DataFrame(rows, columns=["cell_id", "label"])


def test_filled_labels_are_merged_and_blank_rows_ignored(cells):
    new = _table([("c1", "NK"), ("c2", ""), ("c4", " T ")])

    merged = with_new_labels(cells, new, "label")

    labels = merged.obs["label"].astype(object).where(merged.obs["label"].notna(), None)
    assert labels.tolist() == ["B", "NK", None, "T", "T"]
    assert list(merged.obs["label"].cat.categories) == ["B", "NK", "T"]
    # A new AnnData sharing the matrix; the input keeps its labels.
    assert merged is not cells
    assert merged.X is cells.X
    assert cells.obs["label"].isna().sum() == 2


def test_an_expert_label_replaces_the_one_a_cell_had(cells, caplog):
    with caplog.at_level(logging.INFO):
        merged = with_new_labels(cells, _table([("c0", "Plasma"), ("c1", "NK")]), "label")
    assert merged.obs.loc["c0", "label"] == "Plasma"
    assert "2 cells labelled in obs['label'] (1 unlabelled before, 1 relabelled)" in caplog.text


def test_no_table_or_no_filled_label_leaves_the_cells_as_they_are(cells):
    assert with_new_labels(cells, None, "label") is cells
    assert with_new_labels(cells, _table([("c1", ""), ("c2", None)]), "label") is cells


def test_a_model_without_a_label_column_ignores_new_labels_with_a_warning(cells, caplog):
    with caplog.at_level(logging.WARNING):
        assert with_new_labels(cells, _table([("c1", "NK")]), None) is cells
    assert "not used" in caplog.text


def test_a_missing_label_column_is_created_for_embedding(cells):
    merged = with_new_labels(cells, _table([("c3", "NK")]), "cell_type")
    assert merged.obs["cell_type"].isna().tolist() == [True, True, True, False, True]
    assert merged.obs.loc["c3", "cell_type"] == "NK"


def test_ids_that_are_not_cells_are_dropped_with_a_warning(cells, caplog):
    with caplog.at_level(logging.WARNING):
        merged = with_new_labels(cells, _table([("c1", "NK"), ("gone", "B")]), "label")
    assert merged.obs.loc["c1", "label"] == "NK"
    assert "1 of the 2 cells" in caplog.text
    assert "gone" in caplog.text


def test_a_table_of_other_cells_is_refused_naming_the_file_and_the_fix(cells):
    with pytest.raises(NewLabelsError, match=r"new_labels.csv.*label_suggestions.csv"):
        with_new_labels(cells, _table([("x1", "NK"), ("x2", "B")]), "label")


def test_a_cell_given_two_labels_is_refused(cells):
    with pytest.raises(NewLabelsError, match=r"two different labels.*\['c1'\]"):
        labels_given(_table([("c1", "NK"), ("c1", "B"), ("c2", "B"), ("c2", "B")]))
