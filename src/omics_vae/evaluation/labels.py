"""Label transfer: how well the model's label classifier predicts cell types it was not
told, and a confusion figure of its mistakes.

Three groups of evaluated cells are scored when present:

- ``labelled, held out``: cells of the validation and test splits with a known label
  (a category of the model's label key): cells the model never trained on.
- ``labelled, trained on``: training cells with a known label, for comparison (the
  classifier was fitted on them).
- ``hidden label``: cells whose label the model was NOT given (missing, or the declared
  unlabelled category) but whose cell type is known under the processing's
  ``cell_type_key`` (a different column, e.g. the truth kept aside in a benchmark).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from omics_vae.evaluation.cells import RECORD_KEY
from omics_vae.processing.annotations import predicted_label_columns

# A prediction below this probability is reported as low confidence: a cell type the
# model may not know (e.g. one absent from the training labels).
LOW_CONFIDENCE = 0.5
HELD_OUT, TRAINED_ON, HIDDEN = "labelled, held out", "labelled, trained on", "hidden label"
METRIC_SCORES = ("accuracy", "macro_f1", "low_confidence_share", "n_cells")
ROUND_COLUMNS = (
    "round",
    "run",
    "started",
    "labelled_training_cells",
    "held_out_accuracy",
    "held_out_macro_f1",
    "hidden_label_accuracy",
)
TRANSFER_COLUMNS = (
    "cells",
    "n_cells",
    "accuracy",
    "macro_f1",
    "mean_probability",
    "low_confidence_share",
    "note",
)


def label_transfer(evaluation_cells: AnnData) -> tuple[pd.DataFrame, Figure]:
    """Accuracy, macro-F1 and confidence of the predicted labels, and their confusion.

    Args:
        evaluation_cells: Output of ``preparation.prepare_evaluation_cells``.

    Returns:
        One row per scored group of cells (``TRANSFER_COLUMNS``; one explanatory row when
        the model predicts no labels) and a row-normalised confusion matrix of every
        scored cell that was not a training cell (or of every cell, if all were).
    """
    info = evaluation_cells.uns[RECORD_KEY]
    label_key = info.get("label_key") or None
    if label_key is None or predicted_label_columns(label_key)[0] not in evaluation_cells.obs:
        note = f"{info['model']} predicts no labels (trained without a biological label)"
        return _note_only(note), _empty_figure(note)
    groups = scored_groups(evaluation_cells.obs, info)
    if not groups:
        note = "no evaluated cell has a known label to compare with"
        return _note_only(note), _empty_figure(note)
    rows = [
        _scores(name, truth, predicted, probability)
        for name, (truth, predicted, probability) in groups.items()
    ]
    # The confusion shows cells the classifier was not fitted on, where there are any.
    shown = [g for name, g in groups.items() if name != TRAINED_ON] or list(groups.values())
    truth = np.concatenate([g[0] for g in shown])
    predicted = np.concatenate([g[1] for g in shown])
    return pd.DataFrame(rows, columns=list(TRANSFER_COLUMNS)), plot_confusion(
        truth, predicted, label_key
    )


def scored_groups(
    obs: pd.DataFrame, info: dict[str, Any]
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``{group: (truth, predicted, probability)}`` of the groups that have cells."""
    label_key = info["label_key"]
    given, told, predicted, probability = _predictions(obs, label_key)
    groups = {}
    held_out = (
        obs["split"].astype(str).to_numpy() != "train"
        if "split" in obs
        else np.ones(len(obs), dtype=bool)
    )
    for name, cells in ((HELD_OUT, told & held_out), (TRAINED_ON, told & ~held_out)):
        if cells.any():
            groups[name] = (
                given[cells].astype(str),
                predicted[cells],
                probability[cells],
            )
    truth_key = info.get("cell_type_key")
    if truth_key and truth_key != label_key:
        truth = obs[truth_key]
        hidden = ~told & truth.notna().to_numpy()
        if hidden.any():
            groups[HIDDEN] = (
                truth.astype(str).to_numpy()[hidden],
                predicted[hidden],
                probability[hidden],
            )
    return groups


def _predictions(
    obs: pd.DataFrame, label_key: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(given label or None, known to the model?, predicted label, its probability)``
    of every cell, from the label column and the model's prediction columns."""
    label_column, probability_column = predicted_label_columns(label_key)
    known = set(obs[label_column].cat.categories.astype(str))
    given = obs[label_key].astype(str).where(obs[label_key].notna(), None).to_numpy()
    told = np.isin(given, list(known))
    predicted = obs[label_column].astype(str).to_numpy()
    return given, told, predicted, obs[probability_column].to_numpy(dtype=np.float64)


def transfer_metrics(label_transfer_table: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The table's scores as MLflow metrics: ``label_transfer/<group>/<score>``."""
    metrics = {}
    for _, row in label_transfer_table.dropna(subset=["accuracy"]).iterrows():
        for score in METRIC_SCORES:
            metrics[metric_name(row["cells"], score)] = {"value": float(row[score]), "step": 0}
    return metrics


def metric_name(cells: str, score: str) -> str:
    """``label_transfer/<group>/<score>``: ``labelled, held out`` → ``labelled_held_out``."""
    return f"label_transfer/{'_'.join(str(cells).replace(',', ' ').split())}/{score}"


def labelling_rounds(
    history: pd.DataFrame, label_transfer_table: pd.DataFrame
) -> tuple[pd.DataFrame, Figure]:
    """Label transfer run after run, as the expert's labels accumulate.

    Args:
        history: Earlier runs of the same model on the same cells
            (``omics_vae.store.history.label_transfer_history``).
        label_transfer_table: This run's ``label_transfer`` table.

    Returns:
        One row per run, this one last (``ROUND_COLUMNS``), and accuracy against the
        number of labelled training cells.
    """
    scores = {
        metric_name(row["cells"], score): row[score]
        for _, row in label_transfer_table.iterrows()
        for score in METRIC_SCORES
    }
    rounds = [
        _round(str(run["run_id"]), str(run["started"]), run["metrics"])
        for _, run in history.iterrows()
    ]
    rounds.append(_round("this run", "", scores))
    table = pd.DataFrame(rounds, columns=list(ROUND_COLUMNS))
    table["round"] = np.arange(1, len(table) + 1)
    return table, plot_labelling_rounds(table)


def _round(run: str, started: str, metrics: dict[str, float]) -> dict[str, Any]:
    def score(cells: str, name: str) -> float:
        value = metrics.get(metric_name(cells, name))
        return float(value) if value is not None and pd.notna(value) else np.nan

    return {
        "round": 0,
        "run": run,
        "started": started,
        "labelled_training_cells": score(TRAINED_ON, "n_cells"),
        "held_out_accuracy": score(HELD_OUT, "accuracy"),
        "held_out_macro_f1": score(HELD_OUT, "macro_f1"),
        "hidden_label_accuracy": score(HIDDEN, "accuracy"),
    }


def plot_labelling_rounds(rounds: pd.DataFrame) -> Figure:
    """Accuracy of the held-out (and hidden-label) cells against labelled training cells,
    each point numbered by its round."""
    figure = Figure(figsize=(6, 3.8), layout="constrained")
    axis = figure.subplots()
    for column, name, colour in (
        ("held_out_accuracy", "labelled, held out", "tab:blue"),
        ("hidden_label_accuracy", "hidden label", "tab:orange"),
    ):
        points = rounds.dropna(subset=[column, "labelled_training_cells"])
        if points.empty:
            continue
        axis.plot(points["labelled_training_cells"], points[column], "o-", color=colour, label=name)
        for _, point in points.iterrows():
            axis.annotate(
                str(point["round"]),
                (point["labelled_training_cells"], point[column]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize=8,
            )
    axis.set_xlabel("labelled training cells")
    axis.set_ylabel("label transfer accuracy")
    if axis.lines:
        axis.legend(frameon=False)
    note = (
        "one round so far: add labels to data/01_raw/new_labels.csv and run again"
        if len(rounds) == 1
        else f"{len(rounds)} rounds (numbered), this run last"
    )
    axis.set_title(f"Labelling rounds: {note}", fontsize=9)
    return figure


def _scores(
    name: str, truth: np.ndarray, predicted: np.ndarray, probability: np.ndarray
) -> dict[str, Any]:
    unknown_types = sorted(set(truth) - set(predicted))
    note = f"cell types never predicted: {', '.join(unknown_types[:5])}" if unknown_types else ""
    return {
        "cells": name,
        "n_cells": len(truth),
        "accuracy": float(accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", zero_division=0)),
        "mean_probability": float(probability.mean()),
        "low_confidence_share": float((probability < LOW_CONFIDENCE).mean()),
        "note": note,
    }


def _note_only(note: str) -> pd.DataFrame:
    row = dict.fromkeys(TRANSFER_COLUMNS, np.nan) | {"cells": "none", "n_cells": 0, "note": note}
    return pd.DataFrame([row], columns=list(TRANSFER_COLUMNS))


def plot_confusion(truth: np.ndarray, predicted: np.ndarray, label_key: str) -> Figure:
    """Row-normalised confusion matrix: the share of each true type given each label."""
    true_labels = sorted(set(truth))
    predicted_labels = sorted(set(predicted) | set(true_labels))
    counts = confusion_matrix(truth, predicted, labels=predicted_labels)
    rows = [predicted_labels.index(label) for label in true_labels]
    counts = counts[rows]
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    figure = Figure(
        figsize=(2.5 + 0.45 * len(predicted_labels), 1.8 + 0.4 * len(true_labels)),
        layout="constrained",
    )
    axis = figure.subplots()
    image = axis.imshow(shares, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    for (row, column), value in np.ndenumerate(counts):
        if value:
            colour = "white" if shares[row, column] > 0.6 else "black"
            axis.text(column, row, str(value), ha="center", va="center", color=colour, fontsize=8)
    axis.set_xticks(range(len(predicted_labels)), predicted_labels, rotation=45, ha="right")
    axis.set_yticks(range(len(true_labels)), true_labels)
    axis.set_xlabel(f"predicted {label_key}")
    axis.set_ylabel("true cell type")
    accuracy = accuracy_score(truth, predicted)
    axis.set_title(f"Label transfer: {len(truth):,} cells, accuracy {accuracy:.3f}")
    figure.colorbar(image, ax=axis, label="share of the true type")
    return figure


def _empty_figure(note: str) -> Figure:
    figure = Figure(figsize=(5, 1.5), layout="constrained")
    axis = figure.subplots()
    axis.axis("off")
    axis.text(0.5, 0.5, note, ha="center", va="center", wrap=True)
    return figure


def query_label_transfer(query_embeddings: AnnData, label_key: str | None) -> pd.DataFrame:
    """Label transfer to mapped query cells: scored where the query has the label column
    with a value the model knows; cells of types the model never saw are reported as
    the share of low-confidence predictions among them, not as errors."""
    if label_key is None:
        return _note_only("the model predicts no labels (trained without a biological label)")
    obs = query_embeddings.obs
    if label_key not in obs:
        return _note_only(f"the query has no obs['{label_key}'] to compare the predictions with")
    given, told, predicted, probability = _predictions(obs, label_key)
    rows = []
    if told.any():
        truth = given[told].astype(str)
        rows.append(_scores("query, known types", truth, predicted[told], probability[told]))
    unseen = ~told & obs[label_key].notna().to_numpy()
    if unseen.any():
        types = sorted(set(given[unseen]))
        rows.append(
            {
                "cells": "query, types the model never saw",
                "n_cells": int(unseen.sum()),
                "accuracy": np.nan,
                "macro_f1": np.nan,
                "mean_probability": float(probability[unseen].mean()),
                "low_confidence_share": float((probability[unseen] < LOW_CONFIDENCE).mean()),
                "note": f"types: {', '.join(types[:5])}",
            }
        )
    if not rows:
        return _note_only(f"no query cell has a value in obs['{label_key}']")
    return pd.DataFrame(rows, columns=list(TRANSFER_COLUMNS))
