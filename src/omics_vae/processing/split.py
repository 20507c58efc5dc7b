"""The train/val/test split of the cells, stratified as finely as the data allows."""

from __future__ import annotations

import logging
import math

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from omics_vae.processing.annotations import lineage_record, with_own_annotations
from omics_vae.processing.errors import LOCAL_TRAINING_PARAMETERS_FILE, DataProcessingError
from omics_vae.schemas.data_processing import DataProcessingParams, SplitParams

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


def split_cells(selected: ad.AnnData, params: DataProcessingParams) -> ad.AnnData:
    """Assigns every cell to train, val or test, reproducibly for ``split.seed``.

    Stratifies by batch x cell type, with groups too small to reach the val and test
    sets merged into their batch's remainder; if that cannot be split it stratifies by
    batch only, then not at all, and logs which one it used.

    Args:
        selected: Output of ``select_highly_variable_genes``.
        params: The ``data_processing`` parameter block.

    Returns:
        A new AnnData (matrices shared) with the categorical ``obs["split"]`` and the
        lineage record ``uns["data_processing"]`` completed: the parameters used and
        the numbers of cells and genes at each step.
    """
    labels, strategy = _assign_splits(selected.obs, params)
    model_input = with_own_annotations(selected)
    model_input.obs["split"] = pd.Categorical(labels, categories=SPLITS)
    sizes = {name: int(np.count_nonzero(labels == name)) for name in SPLITS}
    lineage_record(model_input).update(n_cells_per_split=sizes, split_stratified_by=strategy)
    logger.info(
        "Split %d cells into train %d, val %d, test %d, stratified by %s.",
        model_input.n_obs,
        sizes["train"],
        sizes["val"],
        sizes["test"],
        strategy,
    )
    return model_input


def _codes(column: pd.Series) -> np.ndarray:
    """Integer labels of a column (missing values get their own label)."""
    return pd.factorize(column, use_na_sentinel=False)[0]


def _strata_candidates(
    obs: pd.DataFrame, params: DataProcessingParams
) -> list[tuple[str, np.ndarray | None]]:
    """Stratifications to try, finest first, each with a description for the log."""
    # Integer codes rather than joined strings: this runs on millions of cells.
    batch = _codes(obs[params.batch_key])
    candidates: list[tuple[str, np.ndarray | None]] = []
    held_out = params.split.val + params.split.test
    if params.cell_type_key is not None and held_out > 0:
        cell_type = _codes(obs[params.cell_type_key])
        groups = batch * (cell_type.max() + 1) + cell_type
        _, group_of_cell, group_sizes = np.unique(groups, return_inverse=True, return_counts=True)
        # A group needs about two cells in val + test for its second split.
        small = group_sizes[group_of_cell] < math.ceil(2 / held_out)
        merged = np.where(small, -1 - batch, groups)
        description = (
            f"{params.batch_key} x {params.cell_type_key} "
            f"({len(np.unique(merged))} strata, {len(np.unique(groups[small]))} small "
            "groups merged into their batch)"
        )
        candidates.append((description, merged))
    candidates.append((params.batch_key, batch))
    candidates.append(("nothing (groups too small)", None))
    return candidates


def _assign_splits(obs: pd.DataFrame, params: DataProcessingParams) -> tuple[np.ndarray, str]:
    errors = []
    for description, strata in _strata_candidates(obs, params):
        try:
            return _split_positions(len(obs), strata, params.split), description
        except ValueError as error:
            errors.append(f"{description}: {error}")
    raise DataProcessingError(
        f"Cannot split {len(obs)} cells into train/val/test with data_processing.split "
        f"{params.split.model_dump()}: " + "; ".join(errors)
    )


def _split_positions(n_cells: int, strata: np.ndarray | None, split: SplitParams) -> np.ndarray:
    labels = np.full(n_cells, "train", dtype=object)
    held_out = split.val + split.test
    if held_out == 0:
        return labels
    positions = np.arange(n_cells)
    _, rest = train_test_split(
        positions, test_size=held_out, random_state=split.seed, stratify=strata
    )
    if split.val == 0 or split.test == 0:
        labels[rest] = "test" if split.val == 0 else "val"
        return labels
    val, test = train_test_split(
        rest,
        test_size=split.test / held_out,
        random_state=split.seed,
        stratify=None if strata is None else strata[rest],
    )
    labels[val] = "val"
    labels[test] = "test"
    return labels


def planned_split_sizes(n_cells: int, split: SplitParams) -> dict[str, int]:
    """The cells ``split_cells`` puts in each split, known before splitting.

    scikit-learn's ``train_test_split`` rounds the held-out share up (``ceil``), then
    splits it into val and test the same way; stratification does not change the sizes.
    """
    held_out = split.val + split.test
    if held_out == 0 or n_cells == 0:
        return {"train": n_cells, "val": 0, "test": 0}
    n_rest = math.ceil(held_out * n_cells)
    sizes = {"train": n_cells - n_rest, "val": 0, "test": 0}
    if split.val == 0 or split.test == 0:
        sizes["test" if split.val == 0 else "val"] = n_rest
        return sizes
    sizes["test"] = math.ceil(split.test / held_out * n_rest)
    sizes["val"] = n_rest - sizes["test"]
    return sizes


def check_cells_suffice(
    n_cells: int,
    params: DataProcessingParams,
    batch_size: int | None,
    cells: str,
    other_fix: str | None = None,
) -> None:
    """Refuses data too small for the split, or for a training batch, before any work.

    Args:
        n_cells: Cells the split would get.
        params: The ``data_processing`` parameter block.
        batch_size: ``training.trainer.batch_size``: the training set needs as many
            cells; ``None`` checks the split only.
        cells: What the cells are, for the message (e.g. "raw_counts has 10 cells").
        other_fix: A further way out, for the message (e.g. relaxing QC thresholds).

    Raises:
        DataProcessingError: A split with a fraction above 0 would get no cell, or the
            training set fewer cells than ``batch_size``; the message names the keys
            that fix it, each with a value that does.
    """
    split = params.split
    sizes = planned_split_sizes(n_cells, split)
    fractions = {name: getattr(split, name) for name in SPLITS}
    empty = [name for name in SPLITS if fractions[name] > 0 and sizes[name] == 0]
    too_few_to_train = batch_size is not None and 0 < sizes["train"] < batch_size
    if not empty and not too_few_to_train:
        return
    planned = ", ".join(f"{name} {sizes[name]}" for name in SPLITS)
    shares = ", ".join(f"{name} {fractions[name]:g}" for name in SPLITS)
    problem = (
        f"no cell in the {' and '.join(empty)} set"
        if empty
        else f"{sizes['train']} training cells, fewer than training.trainer.batch_size = "
        f"{batch_size}"
    )
    fixes = []
    # The schema's smallest batch is 2 cells (a batch-normalised layer needs two).
    if not empty and too_few_to_train and sizes["train"] >= 2:
        fixes.append(
            f"set training.trainer.batch_size: {sizes['train']} (or lower) in "
            f"{LOCAL_TRAINING_PARAMETERS_FILE}"
        )
    fixes.append(f"use at least {_cells_needed(split, batch_size)} cells")
    if other_fix:
        fixes.append(other_fix)
    raise DataProcessingError(
        f"{cells}: data_processing.split ({shares}) would give {planned} cells, so "
        f"{problem}. To fix it, {', or '.join(fixes)}."
    )


def _cells_needed(split: SplitParams, batch_size: int | None) -> int:
    """The fewest cells that give every split with a fraction a cell, and a full batch."""
    wanted = batch_size or 1

    def enough(n_cells: int) -> bool:
        sizes = planned_split_sizes(n_cells, split)
        return sizes["train"] >= wanted and all(
            sizes[name] > 0 for name in SPLITS if getattr(split, name) > 0
        )

    n_cells = max(1, math.floor(wanted / split.train) - 2)
    while not enough(n_cells):
        n_cells += 1
    return n_cells
