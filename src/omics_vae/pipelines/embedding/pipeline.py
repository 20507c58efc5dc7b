"""Embedding pipeline: processed cells + trained model → latents, table, info record."""

from kedro.pipeline import Node, Pipeline

from omics_vae.pipelines.embedding.nodes import embed_cells


def create_pipeline(**kwargs) -> Pipeline:
    """Embed ``model_input`` with ``model`` and its ``model_card``.

    ``model`` is the catalog's latest checkpoint (or ``--load-versions model:<version>``);
    with ``--params embedding.model_uri=models:/<name>@<alias>`` the project's
    ``RegisteredModelHooks`` serves that registered version as ``model`` and
    ``model_card`` instead, so no local checkpoint is needed.
    """
    return Pipeline(
        [
            Node(
                embed_cells,
                inputs=["model_input", "model", "model_card", "params:embedding", "new_labels"],
                outputs=["embeddings", "latent_table", "embedding_info"],
                name="embed_cells_node",
            ),
        ],
        tags="embedding",
    )
