"""Earlier labelling rounds read from a real MLflow store, and the rounds table."""

from __future__ import annotations

import time

import mlflow
import numpy as np
import pandas as pd
import pytest

from omics_vae.evaluation.labels import (
    HELD_OUT,
    TRAINED_ON,
    TRANSFER_COLUMNS,
    labelling_rounds,
)
from omics_vae.store.history import label_transfer_history
from omics_vae.store.reuse import ModelStore

DATA = "d" * 16


def _log_run(metrics, tags, status="FINISHED", parent=None):
    with mlflow.start_run(nested=parent is not None, parent_run_id=parent) as run:
        mlflow.set_tags(tags)
        mlflow.log_metrics(metrics)
    if status != "FINISHED":
        mlflow.MlflowClient().set_terminated(run.info.run_id, status)
    time.sleep(0.01)  # distinct start times
    return run.info.run_id


def _round(labelled, accuracy):
    return {
        "label_transfer/labelled_trained_on/n_cells": labelled,
        "label_transfer/labelled_held_out/accuracy": accuracy,
        "label_transfer/labelled_held_out/macro_f1": accuracy - 0.1,
    }


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    yield ModelStore(uri)
    mlflow.set_tracking_uri(previous)


def test_finished_runs_of_the_model_on_the_same_cells_are_the_rounds(store):
    tags = {"data_fingerprint": DATA, "model_name": "invae"}
    first = _log_run(_round(100, 0.7), {**tags, "training_fingerprint": "a"})
    # The same trained model reused by a later run: the same round, counted once.
    again = _log_run(_round(100, 0.7), {**tags, "training_fingerprint": "a"})
    embedded = _log_run(_round(120, 0.8), {"embedding.data_fingerprint": DATA})
    _log_run(_round(140, 0.9), {**tags, "training_fingerprint": "b"}, status="FAILED")
    _log_run(_round(150, 0.9), {**tags, "data_fingerprint": "other"})
    _log_run(_round(160, 0.9), {**tags, "model_name": "scvi_vae"})
    _log_run({"scib/total": 0.5}, {**tags, "training_fingerprint": "c"})
    _log_run(_round(170, 0.9), {**tags, "training_fingerprint": "d"}, parent=first)

    history = label_transfer_history(store, DATA, "invae")

    assert history["run_id"].tolist() == [again, embedded]
    assert first not in history["run_id"].tolist()


def test_the_rounds_table_puts_this_run_after_the_earlier_ones(store):
    _log_run(_round(100, 0.7), {"data_fingerprint": DATA, "model_name": "invae"})
    history = label_transfer_history(store, DATA, "invae")
    this_run = pd.DataFrame(
        [
            {"cells": HELD_OUT, "n_cells": 50, "accuracy": 0.8, "macro_f1": 0.75},
            {"cells": TRAINED_ON, "n_cells": 120, "accuracy": 0.9, "macro_f1": 0.85},
        ],
        columns=list(TRANSFER_COLUMNS),
    )

    rounds, figure = labelling_rounds(history, this_run)

    assert rounds["round"].tolist() == [1, 2]
    assert rounds["run"].iloc[-1] == "this run"
    assert rounds["labelled_training_cells"].tolist() == [100, 120]
    assert rounds["held_out_accuracy"].tolist() == pytest.approx([0.7, 0.8])
    assert np.isnan(rounds["hidden_label_accuracy"]).all()
    assert "2 rounds" in figure.axes[0].get_title()
