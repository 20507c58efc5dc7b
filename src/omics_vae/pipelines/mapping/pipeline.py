"""Mapping pipeline: query counts + trained model → query embedding, combined embedding
with the reference, its UMAP and the label transfer to the query."""

from kedro.pipeline import Node, Pipeline

from omics_vae.pipelines.mapping.nodes import (
    check_query,
    combine_embeddings,
    map_query,
    plot_mapping,
    score_query,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Map ``query_counts`` onto the catalog's ``model`` (the latest checkpoint, or
    ``--load-versions model:<version>``), scArches-style for batches it never saw."""
    return Pipeline(
        [
            Node(
                check_query,
                inputs=["query_counts", "model_input", "model"],
                outputs="query_cells",
                name="check_query_node",
            ),
            Node(
                map_query,
                inputs=["query_cells", "model", "params:mapping"],
                outputs=["mapped_model", "query_embeddings", "mapping_record"],
                name="map_query_node",
            ),
            Node(
                combine_embeddings,
                inputs=["embeddings", "query_embeddings", "model"],
                outputs="mapped_embeddings",
                name="combine_embeddings_node",
            ),
            Node(
                plot_mapping,
                inputs=["mapped_embeddings", "model", "params:mapping"],
                outputs="mapping_figure",
                name="plot_mapping_node",
            ),
            Node(
                score_query,
                inputs=["query_embeddings", "model"],
                outputs="mapping_transfer",
                name="score_query_node",
            ),
        ],
        tags="mapping",
    )
