"""NewLabelsDataset: the expert's labels, an empty table until the file exists."""

from __future__ import annotations

import pandas as pd
import pytest
from kedro.io import DatasetError

from omics_vae.datasets import NewLabelsDataset


def test_a_missing_file_loads_as_an_empty_table(tmp_path):
    table = NewLabelsDataset(filepath=str(tmp_path / "new_labels.csv")).load()
    assert table.empty
    assert list(table.columns) == ["cell_id", "label"]


def test_saved_labels_load_as_text_with_other_columns_kept(tmp_path):
    dataset = NewLabelsDataset(filepath=str(tmp_path / "new_labels.csv"))
    dataset.save(pd.DataFrame({"rank": [1, 2], "cell_id": ["007", "AC-1"], "label": ["NA", ""]}))
    table = dataset.load()
    # Ids and labels stay as written: no '007' → 7, no 'NA' → NaN.
    assert table["cell_id"].tolist() == ["007", "AC-1"]
    assert table["label"].tolist() == ["NA", ""]
    assert "rank" in table.columns


def test_a_file_without_the_two_columns_is_refused_naming_it(tmp_path):
    path = tmp_path / "new_labels.csv"
    path.write_text("barcode,cell_type\nAC-1,B\n")
    with pytest.raises(
        DatasetError, match=r"new_labels.csv needs the columns.*lacks \['cell_id', 'label'\]"
    ):
        NewLabelsDataset(filepath=str(path)).load()
