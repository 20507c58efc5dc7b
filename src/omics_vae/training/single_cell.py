"""Training a single-cell model (inVAE, the scVI-style baseline) on processed cells."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import pandas as pd
from anndata import AnnData

from omics_vae.data.fingerprint import fingerprint_anndata
from omics_vae.data.tensors import CountsTensors
from omics_vae.models import BaseVAE, get_model_class
from omics_vae.params import validate_section
from omics_vae.processing.annotations import COUNTS_LAYER
from omics_vae.processing.new_labels import with_new_labels
from omics_vae.schemas.training import TrainingParams
from omics_vae.training.fitting import TrainingInputError, fit_model
from omics_vae.training.identity import training_identity

logger = logging.getLogger(__name__)


# The user's own settings (git-ignored), merged key by key over conf/base.
PARAMETERS_FILE = "conf/local/parameters_training.yml"
PROCESSING_PARAMETERS_FILE = "conf/local/parameters_data_processing.yml"


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
            "unlabelled_category": config.covariates.unlabelled_category,
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
    # Passed on without a name here, so fit_model can free all cells once it has split them.
    model, history, facts = fit_model(
        model, training_tensors(model, model_input, config), config, "training", identity
    )
    summary = {
        **facts,
        "bio_keys": bio_keys,
        "tech_keys": tech_keys,
        "data_fingerprint": identity["data"],
        "n_cells": {split: int(n) for split, n in model_input.obs["split"].value_counts().items()},
        "n_genes": int(model_input.n_vars),
        "labels": labelled_training_cells(model_input, config),
    }
    return model, history, summary


def training_tensors(model: BaseVAE, model_input: AnnData, config: TrainingParams) -> CountsTensors:
    """The model's tensors of ``model_input``, dense or sparse as ``training.data`` says."""
    budget = config.data.max_dense_gb
    return model.make_tensors(
        model_input,
        counts_layer=COUNTS_LAYER,
        counts_format=config.data.counts_format,
        max_dense_bytes=None if budget is None else int(budget * 1e9),
    )


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


def with_labels_added(
    model_input: AnnData, config: TrainingParams, new_labels: pd.DataFrame | None
) -> AnnData:
    """``model_input`` with the expert's ``new_labels`` merged into the label column the
    configured model learns (the first biological covariate), before its identity is
    taken: a model trained with more labels is another model."""
    return with_new_labels(model_input, new_labels, label_column(model_input, config))


def labelled_training_cells(model_input: AnnData, config: TrainingParams) -> dict[str, Any]:
    """The label column and how many training cells carry a label (of the summary)."""
    key = label_column(model_input, config)
    if key is None:
        return {"key": None, "n_labelled_train": 0}
    column = model_input.obs[key]
    known = column.notna() & (column.astype(str) != str(config.covariates.unlabelled_category))
    train = model_input.obs["split"].astype(str) == "train"
    return {"key": key, "n_labelled_train": int((known & train).sum())}


def label_column(model_input: AnnData, config: TrainingParams) -> str | None:
    """The obs key of the label the configured model learns: its first biological
    covariate (``None`` without one)."""
    bio_keys = model_covariates(model_input, config)[0]
    return bio_keys[0] if bio_keys else None


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
    _check_no_missing_covariates(model_input, config, keys)
    if "split" not in model_input.obs:
        raise TrainingInputError(
            "model_input has no obs['split']; run the data_processing pipeline first."
        )
    counts = model_input.obs["split"].value_counts()
    for split in ("train", "val"):
        if counts.get(split, 0) == 0:
            raise TrainingInputError(
                f"The '{split}' split has no cells in model_input. Give it a fraction above 0 "
                f"in data_processing.split ({PROCESSING_PARAMETERS_FILE}) and run "
                "data_processing again."
            )
    n_train = int(counts["train"])
    if config.trainer.batch_size > n_train:
        smaller = (
            f"Set training.trainer.batch_size: {n_train} (or lower) in {PARAMETERS_FILE}"
            if n_train >= 2
            else "Process more cells"
        )
        raise TrainingInputError(
            f"training.trainer.batch_size = {config.trainer.batch_size} exceeds the "
            f"{n_train} training cells of model_input. {smaller}."
        )


def _check_no_missing_covariates(
    model_input: AnnData, config: TrainingParams, keys: list[str]
) -> None:
    """Covariates the model is given must name a category for every cell; only the first
    biological key, the label, may be unknown for some cells (semi-supervised)."""
    bio_keys = resolve_covariates(model_input, config)[0]
    label_key = bio_keys[0] if bio_keys and bio_keys[0] in keys else None
    for key in keys:
        if key == label_key:
            n_unlabelled = check_labels(model_input, key, config.covariates.unlabelled_category)
            if n_unlabelled and config.model_hyperparameters.get("encode_labels"):
                raise TrainingInputError(
                    f"{n_unlabelled:,} cells of model_input have no label in obs['{key}'], "
                    f"but training.hyperparameters.{config.model}.encode_labels is true: an "
                    "encoder that reads the label needs one for every cell. Set "
                    f"training.hyperparameters.{config.model}.encode_labels: false in "
                    f"{PARAMETERS_FILE} (the default) to train semi-supervised."
                )
            continue
        missing = model_input.obs[key].isna().to_numpy()
        if not missing.any():
            continue
        kind = "bio" if key in bio_keys else "tech"
        examples = list(model_input.obs_names[missing][:3])
        label_hint = (
            " Only the first bio covariate, the label, may be missing for some cells."
            if kind == "bio"
            else ""
        )
        raise TrainingInputError(
            f"obs['{key}'] of model_input, a covariate of {config.model} "
            f"(training.covariates.{kind}), has no value for {int(missing.sum()):,} of "
            f"{model_input.n_obs:,} cells (e.g. {examples}).{label_hint} Fill or drop them "
            f"in the raw data and run data_processing again, or set "
            f"training.covariates.{kind}: [] in {PARAMETERS_FILE} to train without it."
        )
    if label_key is None and config.covariates.unlabelled_category is not None:
        raise TrainingInputError(
            f"training.covariates.unlabelled_category is "
            f"'{config.covariates.unlabelled_category}' but {config.model} is given no "
            f"biological label (training.covariates.bio resolves to {bio_keys}). Set "
            f"training.covariates.unlabelled_category: null in {PARAMETERS_FILE}, or name "
            "the label column in training.covariates.bio."
        )


def check_labels(model_input: AnnData, key: str, unlabelled: str | None) -> int:
    """The label column must have at least two known categories and some labelled
    cells; a declared unlabelled category must occur in it. Returns the number of
    unlabelled cells."""
    column = model_input.obs[key]
    values = column.dropna().astype(str)
    if unlabelled is not None and not (values == unlabelled).any():
        raise TrainingInputError(
            f"training.covariates.unlabelled_category is '{unlabelled}', which never occurs "
            f"in obs['{key}'] of model_input (its values: {sorted(values.unique())[:10]}). "
            f"Set it to the value that marks unlabelled cells in {PARAMETERS_FILE}, or "
            "training.covariates.unlabelled_category: null if every cell without a label "
            "has none (NaN)."
        )
    known = values[values != unlabelled] if unlabelled is not None else values
    categories = sorted(known.unique())
    if len(categories) < 2:
        raise TrainingInputError(
            f"obs['{key}'] of model_input, the label of {key!r} (training.covariates.bio), "
            f"has {len(categories)} known categor{'y' if len(categories) == 1 else 'ies'} "
            f"{categories} among {len(known):,} labelled cells: a label needs at least two. "
            f"Set training.covariates.bio: [] in {PARAMETERS_FILE} to train without labels."
        )
    n_unlabelled = model_input.n_obs - len(known)
    if n_unlabelled:
        logger.info(
            "obs['%s']: %d of %d cells are unlabelled; they train with a mixture prior over "
            "the %d labels, weighted by the label classifier.",
            key,
            n_unlabelled,
            model_input.n_obs,
            len(categories),
        )
    return n_unlabelled
