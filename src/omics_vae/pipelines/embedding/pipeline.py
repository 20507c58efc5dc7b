"""Embedding pipeline: processed cells + trained model → latents, table, info record."""

from kedro.pipeline import Node, Pipeline

from omics_vae.pipelines.embedding.nodes import choose_model, embed_cells


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            # A node of its own, so kedro-viz shows where the embedding's model came from
            # (the catalog's checkpoint or, with embedding.model_uri, MLflow's registry).
            Node(
                choose_model,
                inputs=["model", "model_card", "params:embedding"],
                outputs=["embedding_model", "embedding_model_card"],
                name="choose_model_node",
            ),
            Node(
                embed_cells,
                inputs=[
                    "model_input",
                    "embedding_model",
                    "embedding_model_card",
                    "params:embedding",
                ],
                outputs=["embeddings", "latent_table", "embedding_info"],
                name="embed_cells_node",
            ),
        ]
    )
