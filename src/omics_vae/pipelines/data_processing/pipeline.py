"""The single-cell data-processing pipeline: raw counts to model input and QC reports."""

from kedro.pipeline import Node, Pipeline

from .nodes import (
    filter_cells_and_genes,
    normalise_counts,
    plot_qc_metrics,
    select_highly_variable_genes,
    split_cells,
    validate_raw_data,
)


def create_pipeline(**kwargs) -> Pipeline:
    """Builds the pipeline ``raw_counts`` -> ``model_input``, ``qc_summary``, ``qc_figure``.

    Returns:
        The data-processing pipeline; its intermediate AnnData objects are passed by
        reference (see their entries in ``conf/base/catalog.yml``).
    """
    # The training batch size: data too small for one batch are refused before anything
    # is saved, not after they have become the latest model input.
    batch_size = "params:training.trainer.batch_size"
    return Pipeline(
        [
            Node(
                func=validate_raw_data,
                inputs=["raw_counts", "params:data_processing", batch_size],
                outputs="validated_cells",
                name="validate_raw_data_node",
            ),
            Node(
                func=filter_cells_and_genes,
                inputs=["validated_cells", "params:data_processing", batch_size],
                outputs=["filtered_cells", "qc_metrics", "qc_summary"],
                name="filter_cells_and_genes_node",
            ),
            Node(
                func=normalise_counts,
                inputs=["filtered_cells", "params:data_processing"],
                outputs="normalised_cells",
                name="normalise_counts_node",
            ),
            Node(
                func=select_highly_variable_genes,
                inputs=["normalised_cells", "params:data_processing"],
                outputs="annotated_cells",
                name="select_highly_variable_genes_node",
            ),
            Node(
                func=split_cells,
                inputs=["annotated_cells", "params:data_processing"],
                outputs="model_input",
                name="split_cells_node",
            ),
            Node(
                func=plot_qc_metrics,
                inputs=["qc_metrics", "params:data_processing"],
                outputs="qc_figure",
                name="plot_qc_metrics_node",
            ),
        ],
        tags="data_processing",
    )
