"""Embedding pipeline: processed cells + trained model → latents, table, info record."""

from kedro.pipeline import Node, Pipeline

from omics_vae.pipelines.embedding.nodes import embed_cells


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                embed_cells,
                inputs=["model_input", "model", "model_card", "params:embedding"],
                outputs=["embeddings", "latent_table", "embedding_info"],
                name="embed_cells_node",
            ),
        ]
    )
