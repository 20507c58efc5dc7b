"""paired_embedding: trained joint VAE -> latents and imputed platforms of every sample."""

from kedro.pipeline import Node, Pipeline

from omics_vae.pipelines.paired_embedding.nodes import (
    embed_paired_samples,
    imputed_tables,
    paired_embedding_info,
    paired_latent_table,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                embed_paired_samples,
                inputs=[
                    "paired_model_input",
                    "paired_model",
                    "paired_scalers",
                    "params:paired.embedding",
                ],
                outputs=["paired_embeddings", "paired_imputed"],
                name="embed_paired_samples_node",
            ),
            Node(
                paired_latent_table,
                inputs="paired_embeddings",
                outputs="paired_latent_table",
                name="paired_latent_table_node",
            ),
            Node(
                imputed_tables,
                inputs="paired_imputed",
                outputs=["paired_imputed_table_a", "paired_imputed_table_b"],
                name="paired_imputed_tables_node",
            ),
            Node(
                paired_embedding_info,
                inputs=[
                    "paired_embeddings",
                    "paired_model_input",
                    "paired_model_card",
                    "params:paired.embedding",
                ],
                outputs="paired_embedding_info",
                name="paired_embedding_info_node",
            ),
        ],
        tags="paired_embedding",
    )
