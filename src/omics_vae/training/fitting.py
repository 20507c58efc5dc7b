"""Fitting a model built for the data: the plan (phases or one plain phase), the dry run,
and the facts of the run. Kedro-free; ``models.trainer.fit`` does the fitting.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pandas as pd

from omics_vae.errors import ProjectError, TrainingDryRun
from omics_vae.models import BaseVAE
from omics_vae.models.phases import PhasePlanError, TrainingPlan, check_plan, format_plan
from omics_vae.models.threads import threads_of_this_process
from omics_vae.models.trainer import FitSettings, fit
from omics_vae.schemas.training import FitParams, build_plan, plain_plan

logger = logging.getLogger(__name__)


class TrainingInputError(ProjectError, ValueError):
    """The processed data or the parameters cannot be trained on."""


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
    settings = replace(_fit_settings(config, train.n_obs), section=section)
    plan = training_plan(config, model, section) or plain_plan(config, model, settings.max_epochs)
    table = format_plan(plan)
    logger.info("Training plan:\n%s", table)
    if config.dry_run:
        print(f"{table}\n{section}.dry_run: the plan above is valid; nothing was trained.")
        raise TrainingDryRun()
    result = fit(model, train, val, replace(settings, plan=plan, identity=identity))
    history = with_phase_names(result.history, plan)
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
        plan = build_plan(config, model)
        if plan is not None:
            check_plan(plan, model)
    except PhasePlanError as error:
        raise TrainingInputError(
            f"{section}.{error} (set it in conf/local/parameters_*.yml)"
        ) from None
    return plan


def with_phase_names(history: pd.DataFrame, plan: TrainingPlan) -> pd.DataFrame:
    """The history with a ``phase_name`` column beside the numeric ``phase``."""
    if "phase" not in history:
        return history
    names = dict(enumerate(plan.names()))
    return history.assign(phase_name=history["phase"].map(lambda i: names.get(int(i), "")))


def default_max_epochs(n_cells: int) -> int:
    """scvi-tools' rule: 400 epochs up to 20,000 cells, proportionally fewer beyond."""
    return max(1, min(400, round(400 * 20_000 / max(n_cells, 1))))


def _fit_settings(config: FitParams, n_train_cells: int) -> FitSettings:
    trainer = config.trainer.model_dump()
    if trainer["max_epochs"] == "auto":
        trainer["max_epochs"] = default_max_epochs(n_train_cells)
    if trainer["num_threads"] is None:
        trainer["num_threads"] = threads_of_this_process()
    return FitSettings(
        **trainer,
        seed=config.seed,
        checkpoint_dir=f"{config.checkpoint_dir}/{config.model}",
        resume_from=config.resume_from,
        force_plan_change=config.force_plan_change,
    )
