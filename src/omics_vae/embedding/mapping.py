"""Query mapping: new cells embedded with a trained model, batches it never saw included.

``check_query`` refuses a query the model cannot read, before any work; ``map_query``
extends the model for the query's new batches (``models.surgery``), fine-tunes only
their columns on the query cells, and embeds and labels every query cell;
``combined_embedding`` puts reference and query side by side for the UMAP and the
label-transfer scores.
"""

from __future__ import annotations

import logging
import tempfile
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from anndata import AnnData

from omics_vae.embedding.cells import add_predicted_labels, latent_keys
from omics_vae.errors import ProjectError
from omics_vae.models import BaseVAE
from omics_vae.models.phases import OptimizerSpec, Phase, Ramp, TrainingPlan, Until
from omics_vae.models.surgery import (
    query_batches,
    train_only_new_batch_columns,
    with_query_batches,
)
from omics_vae.models.threads import threads_of_this_process
from omics_vae.models.trainer import FitSettings, fit
from omics_vae.processing.annotations import COUNTS_LAYER
from omics_vae.schemas.mapping import MappingParams

logger = logging.getLogger(__name__)

QUERY_DATA = "query_counts"
LOCAL_CATALOG_FILE = "conf/local/catalog.yml"
DATASET_COLUMN = "dataset"
_EXAMPLES = 10


class QueryInputError(ProjectError, ValueError):
    """The query cannot be mapped with the model."""


def check_query(query_counts: AnnData, model_input: AnnData, model: BaseVAE) -> AnnData:
    """The query's raw counts of the model's genes, in the model's order.

    Args:
        query_counts: The query's raw counts (``X`` or ``layers["counts"]``) and obs.
        model_input: The reference's processed cells: the model's genes.
        model: The trained model (its technical covariates).

    Raises:
        QueryInputError: Genes of the model are missing from the query, the query lacks
            a technical covariate the model needs, or a cell has no counts.
    """
    genes = model_input.var_names
    missing = genes.difference(query_counts.var_names)
    if len(missing):
        raise QueryInputError(
            f"{QUERY_DATA} lacks {len(missing):,} of the {len(genes):,} genes the model was "
            f"trained on (e.g. {list(missing[:_EXAMPLES])}). Map a query measured on the "
            "same genes (names as in the reference's var_names), or train the model on the "
            "genes both share."
        )
    for key in model.hparams.get("tech_categories") or {}:
        if key not in query_counts.obs:
            raise QueryInputError(
                f"obs['{key}'] (the model's technical covariate) is not in {QUERY_DATA} "
                f"(obs columns: {sorted(query_counts.obs.columns)}). Add the query's batch "
                f"under that name in the file {QUERY_DATA} names in {LOCAL_CATALOG_FILE}."
            )
    if not model.hparams.get("tech_categories"):
        logger.info("The model has no technical covariate: the query is embedded as it is.")
    counts = query_counts.layers.get(COUNTS_LAYER, query_counts.X)
    query = ad.AnnData(
        X=counts[:, query_counts.var_names.get_indexer(genes)],
        obs=query_counts.obs.copy(),
        var=pd.DataFrame(index=genes),
    )
    query.layers[COUNTS_LAYER] = query.X
    empty = np.asarray(query.X.sum(axis=1)).ravel() <= 0
    if empty.any():
        raise QueryInputError(
            f"{int(empty.sum()):,} cells of {QUERY_DATA} have no counts in the model's "
            f"genes (e.g. {list(query.obs_names[empty][:_EXAMPLES])}); remove them."
        )
    return query


def map_query(
    query: AnnData, model: BaseVAE, config: MappingParams
) -> tuple[BaseVAE, AnnData, dict[str, Any]]:
    """Embed the query with ``model``, fine-tuning columns for its new batches first.

    Args:
        query: ``check_query``'s output.
        model: The trained reference model.
        config: The ``mapping`` parameters.

    Returns:
        The model that embedded the query (the reference model, extended when the query
        brought new batches), the query's embeddings (``obsm["X_<model>"]``,
        ``obs["predicted_<label>"]`` and its probability) and a record of the mapping.
    """
    batches = query_batches(model.encoders["tech"].categories, query.obs)
    record: dict[str, Any] = {"new_batches": {k: list(v) for k, v in batches.new.items()}}
    if batches.any:
        model, widened = with_query_batches(model, batches)
        parts = train_only_new_batch_columns(model, widened, batches)
        model, tuned = fine_tune(model, query, parts, config)
        record.update(tuned)
        logger.info(
            "Mapped %d query cells with new batches %s: %d epochs on their batch columns only",
            query.n_obs,
            record["new_batches"],
            record["epochs"],
        )
    latents = model.get_latent(query, batch_size=config.batch_size, counts_layer=COUNTS_LAYER)
    corrected_key, _ = latent_keys(model)
    embeddings = ad.AnnData(
        X=np.zeros((query.n_obs, 0), dtype=np.float32),
        obs=query.obs.copy(),
        obsm={corrected_key: latents[model.corrected_latent]},
    )
    add_predicted_labels(embeddings, model, query, config.batch_size)
    return model, embeddings, record


def fine_tune(
    model: BaseVAE, query: AnnData, parts: tuple[str, ...], config: MappingParams
) -> tuple[BaseVAE, dict[str, Any]]:
    """Train the new batch columns on the query cells (a seeded 90/10 split)."""
    tensors = model.make_tensors(query, COUNTS_LAYER)
    rng = np.random.default_rng(config.seed)
    validation = rng.random(query.n_obs) < 0.1
    validation[rng.integers(query.n_obs)] = True
    beta = float(model.hparams.beta_max)
    plan = TrainingPlan(
        (
            Phase(
                "map",
                parts,
                OptimizerSpec("adam", {"lr": config.learning_rate, "weight_decay": 0.0}),
                Until(epochs=config.max_epochs),
                loss={"kl_weight": Ramp(beta, beta)},
            ),
        )
    )
    with tempfile.TemporaryDirectory() as checkpoints:
        settings = FitSettings(
            max_epochs=config.max_epochs,
            batch_size=min(config.train_batch_size, int((~validation).sum())),
            seed=config.seed,
            plan=plan,
            enable_progress_bar=False,
            num_threads=config.num_threads or threads_of_this_process(),
            checkpoint_dir=checkpoints,
            section="mapping",
        )
        result = fit(model, tensors.subset(~validation), tensors.subset(validation), settings)
    facts = {
        "epochs": len(result.history),
        "final_val_loss": float(result.history["val/loss"].iloc[-1]),
    }
    return result.model, facts


def combined_embedding(reference: AnnData, query: AnnData, latent_key: str) -> AnnData:
    """Reference and query embeddings in one AnnData, ``obs["dataset"]`` saying which.

    Query cells whose names clash with reference cells get a ``-query`` suffix.
    """
    query = query.copy()
    clash = query.obs_names.isin(reference.obs_names)
    if clash.any():
        query.obs_names = [
            f"{n}-query" if c else n for n, c in zip(query.obs_names, clash, strict=True)
        ]
    parts = {"reference": reference, "query": query}
    combined = ad.concat(
        {
            name: ad.AnnData(obs=part.obs, obsm={latent_key: part.obsm[latent_key]})
            for name, part in parts.items()
        },
        label=DATASET_COLUMN,
        join="outer",
    )
    return combined
