"""``NewLabelsDataset``: the labels an expert adds between runs, a CSV that may not exist."""

from __future__ import annotations

from typing import Any, ClassVar

import pandas as pd
from kedro.io.core import get_filepath_str

from omics_vae.datasets._fsspec import FsspecVersionedDataset
from omics_vae.datasets.errors import DatasetInputError
from omics_vae.processing.new_labels import NEW_LABEL_COLUMNS


class NewLabelsDataset(FsspecVersionedDataset[pd.DataFrame, pd.DataFrame]):
    """``NewLabelsDataset`` loads a CSV of ``cell_id`` and ``label`` columns (others are
    kept and ignored by the project), or an empty table while the file does not exist:
    a run before any label was added needs no file.

    The evaluation's ``label_suggestions.csv`` has both columns, ``label`` empty: copied
    here with some labels filled in, it is a valid file. A file without the two columns
    is refused when loaded, naming the file and the columns it has.

    Examples:
        Using the YAML API:

        ```yaml
        new_labels:
          type: omics_vae.datasets.NewLabelsDataset
          filepath: data/01_raw/new_labels.csv
        ```

        Using the Python API:

        ```python
        import pandas as pd
        from omics_vae.datasets import NewLabelsDataset

        dataset = NewLabelsDataset(filepath="data/01_raw/new_labels.csv")
        dataset.save(pd.DataFrame({"cell_id": ["AAAC-1"], "label": ["B cell"]}))
        labels = dataset.load()
        ```
    """

    DEFAULT_LOAD_ARGS: ClassVar[dict[str, Any]] = {}
    DEFAULT_SAVE_ARGS: ClassVar[dict[str, Any]] = {"index": False}

    def load(self) -> pd.DataFrame:
        load_path = get_filepath_str(self._get_load_path(), self._protocol)
        if not self._fs.exists(load_path):
            return pd.DataFrame({column: pd.Series(dtype=object) for column in NEW_LABEL_COLUMNS})
        with self._fs.open(load_path, mode="r") as handle:
            table = pd.read_csv(handle, dtype=str, keep_default_na=False, **self._load_args)
        missing = [column for column in NEW_LABEL_COLUMNS if column not in table.columns]
        if missing:
            raise DatasetInputError(
                f"{load_path} needs the columns {list(NEW_LABEL_COLUMNS)} and lacks "
                f"{missing} (it has {list(table.columns)[:8]}). Fill the label column of a "
                "copy of data/08_reporting/label_suggestions.csv, or write one row per "
                "cell: cell_id,label."
            )
        return table

    def save(self, data: pd.DataFrame) -> None:
        save_path = get_filepath_str(self._get_save_path(), self._protocol)
        self._write_atomically(lambda path: data.to_csv(path, **self._save_args), save_path)
        self._invalidate_cache()
