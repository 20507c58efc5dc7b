"""Nodes of the training pipeline: fit a registered model on the processed cells."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import lightning as L
import matplotlib.pyplot as plt
import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure

from omics_vae.data.fingerprint import environment_versions, fingerprint_anndata
from omics_vae.models import BaseVAE, get_model_class
from omics_vae.models.phases import PhasePlanError, TrainingPlan, check_plan, format_plan
from omics_vae.models.trainer import FitSettings, fit
from omics_vae.params import validate_section
from omics_vae.pipelines.training.reuse import (
    SINGLE_CELL_ARTIFACTS,
    fingerprint_of,
    retrieve_or_train,
    training_identity,
)
from omics_vae.schemas.training import (
    FitParams,
    TrainingParams,
    build_plan,
    plain_plan,
)

logger = logging.getLogger(__name__)

COUNTS_LAYER = "counts"
PARAMETERS_FILE = "conf/base/parameters_training.yml"


class TrainingInputError(ValueError):
    """The processed data or the parameters cannot be trained on."""


class TrainingDryRun(SystemExit):
    """``training.dry_run``: the plan was validated and printed; nothing is trained.

    A ``SystemExit`` with status 0, so ``kedro run`` stops there without an error.
    """

    def __init__(self) -> None:
        super().__init__(0)


def train_model(
    model_input: AnnData, params: dict[str, Any], data_fingerprint: str | None = None
) -> tuple[BaseVAE, pd.DataFrame, dict[str, Any]]:
    """Train the model named in ``params`` on the ``train`` split, validating on ``val``.

    Args:
        model_input: Processed cells with raw counts in ``layers["counts"]`` and
            ``obs["split"]``.
        params: The ``training`` parameter block.
        data_fingerprint: ``model_input``'s content hash, when the caller has it already
            (hashing the counts twice is wasted work on large data).

    Returns:
        The trained model (weights of its best validation epoch), the per-epoch history
        and a summary of the run (epochs, best score, wall time, covariates, data
        fingerprint) for the model card.
    """
    config = validate_section("training", TrainingParams, params)
    model_class = get_model_class(config.model)
    bio_keys, tech_keys = model_covariates(model_input, config)
    identity = checked_identity(model_input, config, data_fingerprint)

    # Seeded before the model exists, so its initial weights are reproducible too.
    L.seed_everything(config.seed, workers=True, verbose=False)
    model = model_class.from_anndata(
        model_input,
        {
            **config.model_hyperparameters,
            "bio_keys": bio_keys,
            "tech_keys": tech_keys,
            "learning_rate": config.optimizer.learning_rate,
            "weight_decay": config.optimizer.weight_decay,
            "optimizer": config.optimizer.name,
        },
    )
    logger.info(
        "Training %s on %d cells x %d genes (bio covariates %s, technical %s)",
        config.model,
        int((model_input.obs["split"] == "train").sum()),
        model_input.n_vars,
        bio_keys,
        tech_keys,
    )
    tensors = model.make_tensors(model_input, counts_layer=COUNTS_LAYER)
    model, history, facts = fit_model(model, tensors, config, "training", identity)
    summary = {
        **facts,
        "bio_keys": bio_keys,
        "tech_keys": tech_keys,
        "data_fingerprint": identity["data"],
        "n_cells": {split: int(n) for split, n in model_input.obs["split"].value_counts().items()},
        "n_genes": int(model_input.n_vars),
    }
    return model, history, summary


def train_or_reuse_model(
    model_input: AnnData, params: dict[str, Any], force_retrain: bool = False
) -> tuple[BaseVAE, pd.DataFrame, dict[str, Any]]:
    """The training node: reuse a finished model trained on the same data with the same
    parameters (found in MLflow by its training fingerprint), or train one.

    Args:
        model_input: Processed cells (see :func:`train_model`).
        params: The ``training`` parameter block.
        force_retrain: Train even when an identical model exists.
    """
    config = validate_section("training", TrainingParams, params)
    identity = checked_identity(model_input, config)
    return retrieve_or_train(
        lambda: train_model(model_input, params, identity["data"]),
        fingerprint=fingerprint_of(identity),
        artifacts=SINGLE_CELL_ARTIFACTS,
        # A dry run only prints the plan: it neither reuses nor trains a model.
        force_retrain=force_retrain or config.dry_run,
    )


def fit_model(
    model: BaseVAE,
    tensors: Any,
    config: FitParams,
    section: str,
    identity: dict[str, Any] | None = None,
) -> tuple[BaseVAE, pd.DataFrame, dict[str, Any]]:
    """Fit a model built for the data on its ``train`` split, validating on ``val``.

    The plan (the phases, or one plain phase) is checked against the model and logged
    as a table; ``dry_run`` prints it and stops.

    Args:
        model: An untrained registered model.
        tensors: The data as the model's tensors (``model.make_tensors``).
        config: The validated training block (single-cell or paired).
        section: Where that block sits in the parameters, for messages.
        identity: What this training is (``reuse.training_identity``); stored in its
            checkpoints, and required of a checkpoint it resumes.

    Returns:
        The trained model, its per-epoch history and the facts of the run.
    """
    train, val = tensors.subset("train"), tensors.subset("val")
    del tensors  # the splits are copies; keeping all cells too would double the memory
    settings = _fit_settings(config, train.n_obs)
    plan = training_plan(config, model, section)
    table = format_plan(plan or plain_plan(config, model.module.named_parts(), settings.max_epochs))
    logger.info("Training plan:\n%s", table)
    if config.dry_run:
        print(f"{table}\n{section}.dry_run: the plan above is valid; nothing was trained.")
        raise TrainingDryRun()
    result = fit(model, train, val, replace(settings, plan=plan, identity=identity))
    history = result.history if plan is None else with_phase_names(result.history, plan)
    logger.info(
        "Trained %s for %d epochs in %.1f s; best val/loss %.4f",
        config.model,
        result.epochs,
        result.wall_time_s,
        result.best_score,
    )
    facts = {
        "model": config.model,
        "epochs": result.epochs,
        "best_val_loss": result.best_score,
        "wall_time_s": round(result.wall_time_s, 3),
        "resumed_from": str(result.resumed_from) if result.resumed_from else None,
        "lightning_run_dir": str(result.run_dir),
        "phases": result.phases,
    }
    return result.model, history, facts


def training_plan(config: FitParams, model: BaseVAE, section: str) -> TrainingPlan | None:
    """The phases of ``config`` checked against the model built for the data.

    Raises:
        TrainingInputError: The plan cannot run on this model (e.g. a part without
            parameters for this data); the message names the phase and the field.
    """
    try:
        plan = build_plan(config, model.module.named_parts())
        if plan is not None:
            check_plan(plan, model)
    except PhasePlanError as error:
        raise TrainingInputError(f"{section}.{error} (in conf/base/parameters_*.yml)") from None
    return plan


def with_phase_names(history: pd.DataFrame, plan: TrainingPlan) -> pd.DataFrame:
    """The history with a ``phase_name`` column beside the numeric ``phase``."""
    if "phase" not in history:
        return history
    names = dict(enumerate(plan.names()))
    return history.assign(phase_name=history["phase"].map(lambda i: names.get(int(i), "")))


def checked_identity(
    model_input: AnnData, config: TrainingParams, data_fingerprint: str | None = None
) -> dict[str, Any]:
    """The training identity of ``config`` on ``model_input`` (``reuse.training_identity``),
    once the data is known to be trainable.

    Args:
        model_input: Processed cells.
        config: The validated training block.
        data_fingerprint: ``model_input``'s content hash, when the caller has it already.
    """
    bio_keys, tech_keys = model_covariates(model_input, config)
    check_training_input(model_input, config, bio_keys + tech_keys)
    data_fingerprint = data_fingerprint or fingerprint_anndata(model_input, COUNTS_LAYER)
    return training_identity(model_input, data_fingerprint, config, bio_keys + tech_keys)


def model_covariates(model_input: AnnData, config: TrainingParams) -> tuple[list[str], list[str]]:
    """The biological and technical obs keys the configured model is given."""
    bio_keys, tech_keys = resolve_covariates(model_input, config)
    if not get_model_class(config.model).uses_bio_covariates:
        bio_keys = []
    return bio_keys, tech_keys


def resolve_covariates(model_input: AnnData, config: TrainingParams) -> tuple[list[str], list[str]]:
    """Covariate obs keys, with ``auto`` taken from the data_processing record."""
    record = model_input.uns.get("data_processing", {}).get("params", {})
    bio = config.covariates.bio
    tech = config.covariates.tech
    if bio == "auto":
        cell_type_key = record.get("cell_type_key")
        bio = [cell_type_key] if cell_type_key else []
    if tech == "auto":
        batch_key = record.get("batch_key")
        tech = [batch_key] if batch_key else []
    return list(bio), list(tech)


def check_training_input(model_input: AnnData, config: TrainingParams, keys: list[str]) -> None:
    """Refuse data the model cannot be trained on, before any training starts."""
    if COUNTS_LAYER not in model_input.layers:
        raise TrainingInputError(
            f"model_input has no layers['{COUNTS_LAYER}'] (layers: "
            f"{sorted(model_input.layers)}). Run the data_processing pipeline first, which "
            "keeps the raw counts there."
        )
    missing = [key for key in keys if key not in model_input.obs]
    if missing:
        raise TrainingInputError(
            f"training.covariates names obs column(s) {missing} absent from model_input "
            f"(obs columns: {sorted(model_input.obs.columns)}). Fix training.covariates in "
            f"{PARAMETERS_FILE}."
        )
    if "split" not in model_input.obs:
        raise TrainingInputError(
            "model_input has no obs['split']; run the data_processing pipeline first."
        )
    counts = model_input.obs["split"].value_counts()
    for split in ("train", "val"):
        if counts.get(split, 0) == 0:
            raise TrainingInputError(
                f"The '{split}' split has no cells. Give it a fraction above 0 in "
                "data_processing.split (conf/base/parameters_data_processing.yml) and "
                "run data_processing again."
            )
    if config.trainer.batch_size > counts["train"]:
        raise TrainingInputError(
            f"training.trainer.batch_size = {config.trainer.batch_size} exceeds the "
            f"{counts['train']} training cells. Lower it in {PARAMETERS_FILE}."
        )


def default_max_epochs(n_cells: int) -> int:
    """scvi-tools' rule: 400 epochs up to 20,000 cells, proportionally fewer beyond."""
    return max(1, min(400, round(400 * 20_000 / max(n_cells, 1))))


def _fit_settings(config: FitParams, n_train_cells: int) -> FitSettings:
    trainer = config.trainer.model_dump()
    if trainer["max_epochs"] == "auto":
        trainer["max_epochs"] = default_max_epochs(n_train_cells)
    return FitSettings(
        **trainer,
        seed=config.seed,
        checkpoint_dir=f"{config.checkpoint_dir}/{config.model}",
        resume_from=config.resume_from,
        force_plan_change=config.force_plan_change,
    )


def make_model_card(
    summary: dict[str, Any], params: dict[str, Any], history: pd.DataFrame
) -> dict[str, Any]:
    """A small YAML-able record of what was trained, on what, and how well."""
    config = validate_section("training", TrainingParams, params)
    data = {
        "fingerprint": summary["data_fingerprint"],
        "n_cells": summary["n_cells"],
        "n_genes": summary["n_genes"],
    }
    card = model_card(config, summary, history, data)
    card["covariates"] = {"bio": summary["bio_keys"], "tech": summary["tech_keys"]}
    return card


def model_card(
    config: FitParams, summary: dict[str, Any], history: pd.DataFrame, data: dict[str, Any]
) -> dict[str, Any]:
    """The model card of any registered model: parameters, data, how training went."""
    numeric = history.select_dtypes("number")
    final = numeric.iloc[-1].to_dict() if len(numeric) else {}
    return {
        "model": config.model,
        "parameters": config.model_dump(mode="json"),
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
    """``(label, first epoch - 0.5, last epoch + 0.5)`` of each run of equal ``phase``."""
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
    return spans


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


def package_model_for_mlflow(model: BaseVAE) -> BaseVAE:
    """The trained model on the CPU in eval mode, as ``mlflow.pytorch`` stores it."""
    return model.cpu().eval()
