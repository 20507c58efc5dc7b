"""Labels an expert adds between runs (the ``new_labels`` catalog entry), merged into the
label column of the processed cells before a model trains on them or embeds them.

``new_labels`` is a table of ``cell_id`` and ``label``: the evaluation's
``label_suggestions.csv`` with its empty ``label`` column filled in for some of its
cells. Rows left blank are ignored; a filled label replaces what the cell had (the
expert corrects a label as readily as they add one).
"""

from __future__ import annotations

import logging

import pandas as pd
from anndata import AnnData

from omics_vae.errors import ProjectError
from omics_vae.processing.annotations import with_own_annotations

logger = logging.getLogger(__name__)

NEW_LABEL_COLUMNS = ("cell_id", "label")
NEW_LABELS_FILE = "data/01_raw/new_labels.csv"


class NewLabelsError(ProjectError, ValueError):
    """The new labels cannot be merged into the processed cells."""


def labels_given(new_labels: pd.DataFrame | None) -> pd.Series:
    """The filled-in labels of ``new_labels`` as a Series indexed by cell id (empty when
    there is no table or no label is filled in). Refuses a cell given two labels."""
    if new_labels is None or new_labels.empty:
        return pd.Series(dtype=object, name="label")
    table = new_labels.loc[:, list(NEW_LABEL_COLUMNS)].astype(object)
    table["label"] = table["label"].map(lambda value: str(value).strip() if pd.notna(value) else "")
    table = table[table["label"] != ""].drop_duplicates()
    table["cell_id"] = table["cell_id"].astype(str)
    twice = table["cell_id"][table["cell_id"].duplicated()].unique()
    if len(twice):
        raise NewLabelsError(
            f"new_labels ({NEW_LABELS_FILE}) gives {len(twice)} cells two different labels "
            f"(e.g. {list(twice[:3])}). Keep one row per cell_id."
        )
    return pd.Series(table["label"].to_numpy(), index=pd.Index(table["cell_id"]), name="label")


def with_new_labels(
    model_input: AnnData, new_labels: pd.DataFrame | None, label_key: str | None
) -> AnnData:
    """``model_input`` with the new labels written into ``obs[label_key]``: a new AnnData
    sharing its matrices, or ``model_input`` itself when there is nothing to merge.

    Args:
        model_input: The processed cells.
        new_labels: The ``new_labels`` table (``cell_id``, ``label``); ``None`` or empty:
            nothing to merge.
        label_key: The label column the model learns (``None``: the model takes no label,
            and new labels are ignored with a warning).

    Raises:
        NewLabelsError: No cell id of the table is a cell of ``model_input``, or a cell
            is given two labels.
    """
    given = labels_given(new_labels)
    if given.empty:
        return model_input
    if label_key is None:
        logger.warning(
            "new_labels (%s) has %d labels, but the model takes no label column "
            "(training.covariates.bio is empty): they are not used.",
            NEW_LABELS_FILE,
            len(given),
        )
        return model_input
    known = given.index.isin(model_input.obs_names)
    if not known.any():
        raise NewLabelsError(
            f"None of the {len(given)} cell ids of new_labels ({NEW_LABELS_FILE}) is a cell "
            f"of model_input (e.g. {list(given.index[:3])}; model_input has "
            f"{list(model_input.obs_names[:3])}). Copy the cell_id column of "
            "data/08_reporting/label_suggestions.csv, which names processed cells."
        )
    if not known.all():
        logger.warning(
            "%d of the %d cells of new_labels (%s) are not cells of model_input (e.g. %s; "
            "removed by quality control?): their labels are not used.",
            int((~known).sum()),
            len(given),
            NEW_LABELS_FILE,
            list(given.index[~known][:3]),
        )
    given = given[known]
    labelled = with_own_annotations(model_input)
    values = (
        labelled.obs[label_key].astype(object)
        if label_key in labelled.obs
        else pd.Series(None, index=labelled.obs_names, dtype=object)
    )
    before = values.reindex(given.index)
    values.loc[given.index] = given.to_numpy()
    categories = sorted({str(value) for value in values.dropna()})
    labelled.obs[label_key] = pd.Categorical(values, categories=categories)
    relabelled = int((before.notna() & (before.astype(str) != given.astype(str))).sum())
    logger.info(
        "new_labels: %d cells labelled in obs['%s'] (%d unlabelled before, %d relabelled)",
        len(given),
        label_key,
        int(before.isna().sum()),
        relabelled,
    )
    return labelled
