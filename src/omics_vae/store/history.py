"""Earlier runs' label transfer, read from the MLflow store: one point per labelling
round of the active-learning loop (``omics_vae.evaluation.labels.labelling_rounds``)."""

from __future__ import annotations

import logging

import pandas as pd
from mlflow.exceptions import MlflowException

from omics_vae.store.reuse import ModelStore

logger = logging.getLogger(__name__)

# Runs of the same processed cells: tagged by training, or by an embedding-only run.
DATA_TAGS = ("data_fingerprint", "embedding.data_fingerprint")
TRANSFER_PREFIX = "label_transfer"
HISTORY_COLUMNS = ("run_id", "started", "model", "training", "metrics")


def label_transfer_history(store: ModelStore, data_fingerprint: str, model: str) -> pd.DataFrame:
    """Finished top-level runs of ``model`` on the cells with ``data_fingerprint`` that
    logged label-transfer metrics, oldest first.

    Sweep variants (child runs) are left out: they vary more than the labels.

    Returns:
        The run, when it started, the model and its ``label_transfer/...`` metrics as a
        dict; of runs that share a trained model (its training fingerprint), the latest.
        Empty, with a warning, when the store cannot be searched.
    """
    client = store.client()
    runs = {}
    try:
        experiments = [experiment.experiment_id for experiment in client.search_experiments()]
        for tag in DATA_TAGS:
            for run in client.search_runs(
                experiments,
                filter_string=(
                    f"tags.`{tag}` = '{data_fingerprint}' and attributes.status = 'FINISHED'"
                ),
                max_results=1000,
            ):
                runs[run.info.run_id] = run
    except MlflowException as error:
        logger.warning("Could not search MLflow for earlier labelling rounds: %s", error)
        return pd.DataFrame(columns=list(HISTORY_COLUMNS))
    rows = [
        {
            "run_id": run_id,
            "started": pd.Timestamp(run.info.start_time, unit="ms"),
            "model": run.data.tags.get("model_name", model),
            "training": run.data.tags.get("training_fingerprint", run_id),
            "metrics": {
                key: value
                for key, value in run.data.metrics.items()
                if key.startswith(f"{TRANSFER_PREFIX}/")
            },
        }
        for run_id, run in runs.items()
        if "mlflow.parentRunId" not in run.data.tags
    ]
    history = pd.DataFrame(rows, columns=list(HISTORY_COLUMNS))
    history = history[(history["model"] == model) & history["metrics"].map(bool)]
    # A run that reused a trained model (train once) is the same round again: its latest.
    history = history.sort_values("started").drop_duplicates("training", keep="last")
    return history.drop(columns="training").reset_index(drop=True)
