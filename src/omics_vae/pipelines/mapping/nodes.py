"""Nodes of the mapping pipeline: the query checked, mapped onto the trained model, put
beside the reference and scored. The work is ``omics_vae.embedding.mapping``'s."""

from __future__ import annotations

import pandas as pd
from anndata import AnnData
from matplotlib.figure import Figure

from omics_vae.embedding.cells import latent_keys
from omics_vae.embedding.mapping import check_query, combined_embedding, map_query
from omics_vae.evaluation.figures import plot_mapping_umap
from omics_vae.evaluation.labels import query_label_transfer
from omics_vae.evaluation.umaps import umap_layout
from omics_vae.models import BaseVAE
from omics_vae.schemas.evaluation import UmapParams
from omics_vae.schemas.mapping import MappingParams

__all__ = ["check_query", "combine_embeddings", "map_query", "plot_mapping", "score_query"]


def combine_embeddings(embeddings: AnnData, query_embeddings: AnnData, model: BaseVAE) -> AnnData:
    """The reference's embeddings and the query's in one AnnData (``obs["dataset"]``)."""
    return combined_embedding(embeddings, query_embeddings, latent_keys(model)[0])


def plot_mapping(mapped_embeddings: AnnData, model: BaseVAE, params: MappingParams) -> Figure:
    """UMAP of reference and query, coloured by dataset, batch and (predicted) label."""
    config = UmapParams(seed=params.umap_seed)
    latent = mapped_embeddings.obsm[latent_keys(model)[0]]
    n_neighbors = min(config.n_neighbors, mapped_embeddings.n_obs - 1)
    layout = umap_layout(latent, mapped_embeddings.obs_names, n_neighbors, config)
    obs = mapped_embeddings.obs
    batch_keys = list(model.hparams.get("tech_categories") or {})[:1]
    label_key = model.label_key
    colour_by = ["dataset", *batch_keys]
    if label_key is not None:
        colour_by.append(f"predicted_{label_key}")
    coordinates = pd.DataFrame(
        {"umap_1": layout[:, 0], "umap_2": layout[:, 1]}
        | {key: obs[key].astype(str).to_numpy() for key in colour_by}
    )
    return plot_mapping_umap(coordinates, colour_by)


def score_query(query_embeddings: AnnData, model: BaseVAE) -> pd.DataFrame:
    """Label transfer to the query cells whose label is known."""
    return query_label_transfer(query_embeddings, model.label_key)
