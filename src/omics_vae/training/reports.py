"""What a training run reports: the model card, metric histories for MLflow, loss curves."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure

from omics_vae.data.fingerprint import environment_versions
from omics_vae.schemas.training import FitParams


def model_card(
    config: FitParams, summary: dict[str, Any], history: pd.DataFrame, data: dict[str, Any]
) -> dict[str, Any]:
    """The model card of any registered model: parameters (the effective ones: every
    hyperparameter of the model, defaults included), data, how training went."""
    numeric = history.select_dtypes("number")
    final = numeric.iloc[-1].to_dict() if len(numeric) else {}
    return {
        "model": config.model,
        "parameters": config.effective_parameters(),
        "data": data,
        "training": {
            "epochs": summary["epochs"],
            "best_val_loss": summary["best_val_loss"],
            "final_metrics": {k: float(v) for k, v in final.items() if k != "epoch"},
            "wall_time_s": summary["wall_time_s"],
            "resumed_from": summary["resumed_from"],
            "reused_from_run": summary.get("reused_from_run"),
            "phases": summary.get("phases", []),
        },
        "environment": environment_versions(),
    }


def history_to_metrics(history: pd.DataFrame) -> dict[str, list[dict[str, float]]]:
    """The per-epoch curves as MLflow metric histories (step = epoch)."""
    metrics = {}
    # Text columns (phase_name) are for the CSV and the figure, not MLflow metrics.
    numeric = history.select_dtypes("number").columns
    for column in numeric.drop("epoch"):
        values = history[["epoch", column]].dropna()
        metrics[column] = [
            {"value": float(value), "step": int(epoch)}
            for epoch, value in zip(values["epoch"], values[column], strict=True)
        ]
    return metrics


LOSS_PANELS = (("loss", "loss (ELBO)"), ("reconstruction", "reconstruction NLL"), ("kl", "KL"))


def plot_loss_curves(history: pd.DataFrame) -> Figure:
    """Training and validation loss, reconstruction and KL per epoch; phases shaded."""
    figure, axes = plt.subplots(1, len(LOSS_PANELS), figsize=(4.2 * len(LOSS_PANELS), 3.4))
    for axis in axes:
        shade_phases(axis, history)
    for axis, (metric, title) in zip(axes, LOSS_PANELS, strict=True):
        for stage, style in (("train", "-"), ("val", "--")):
            column = f"{stage}/{metric}"
            if column in history:
                values = history[["epoch", column]].dropna()
                axis.plot(values["epoch"], values[column], style, label=stage)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.legend(frameon=False)
    if "kl_weight" in history:
        twin = axes[-1].twinx()
        twin.plot(history["epoch"], history["kl_weight"], ":", color="grey")
        twin.set_ylabel("KL weight (β)", color="grey")
    figure.suptitle("Training curves")
    figure.tight_layout()
    return figure


PHASE_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860")


def phase_spans(history: pd.DataFrame) -> list[tuple[str, float, float]]:
    """``(label, first epoch - 0.5, last epoch + 0.5)`` of each run of equal ``phase``;
    none for a run of one phase (nothing to tell apart)."""
    if "phase" not in history or history["phase"].isna().all():
        return []
    labels = history["phase_name"] if "phase_name" in history else history["phase"]
    spans: list[tuple[str, float, float]] = []
    previous = None
    for epoch, phase, label in zip(history["epoch"], history["phase"], labels, strict=True):
        if phase != previous:
            spans.append((str(label), epoch - 0.5, epoch + 0.5))
            previous = phase
        else:
            spans[-1] = (spans[-1][0], spans[-1][1], epoch + 0.5)
    return spans if len(spans) > 1 else []


def shade_phases(axis, history: pd.DataFrame) -> None:
    """Shade each phase's epochs and name it at the top of the panel."""
    for index, (label, start, end) in enumerate(phase_spans(history)):
        colour = PHASE_COLOURS[index % len(PHASE_COLOURS)]
        axis.axvspan(start, end, color=colour, alpha=0.12, linewidth=0)
        axis.text(
            (start + end) / 2,
            0.98,
            label,
            transform=axis.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=7,
            color=colour,
        )
