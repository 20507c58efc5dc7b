"""Evaluation pipeline: embeddings + processed cells → benchmark, label transfer, UMAPs,
latent statistics and anomalies."""

from kedro.pipeline import Node, Pipeline

from omics_vae.pipelines.evaluation.nodes import (
    benchmark_integration,
    compute_latent_association,
    compute_umaps,
    label_transfer,
    labelling_rounds,
    plot_anomalies,
    plot_latent_association,
    plot_umaps,
    prepare_evaluation_cells,
    scib_results_to_metrics,
    score_anomalies,
    suggest_cells_to_label,
    transfer_metrics,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                prepare_evaluation_cells,
                inputs=["embeddings", "model_input", "params:evaluation"],
                outputs="evaluation_cells",
                name="prepare_evaluation_cells_node",
            ),
            Node(
                benchmark_integration,
                inputs=["evaluation_cells", "params:evaluation"],
                outputs=["scib_results", "scib_figure"],
                name="benchmark_integration_node",
            ),
            Node(
                scib_results_to_metrics,
                inputs="scib_results",
                outputs="scib_metrics",
                name="scib_results_to_metrics_node",
            ),
            Node(
                label_transfer,
                inputs="evaluation_cells",
                outputs=["label_transfer", "label_transfer_figure"],
                name="label_transfer_node",
            ),
            Node(
                transfer_metrics,
                inputs="label_transfer",
                outputs="label_transfer_metrics",
                name="label_transfer_metrics_node",
            ),
            Node(
                suggest_cells_to_label,
                inputs=["embeddings", "params:evaluation"],
                outputs=["label_suggestions", "label_suggestions_figure"],
                name="suggest_cells_to_label_node",
            ),
            Node(
                labelling_rounds,
                inputs=["label_transfer", "embedding_info", "trained_models"],
                outputs=["labelling_rounds", "labelling_rounds_figure"],
                name="labelling_rounds_node",
            ),
            Node(
                compute_umaps,
                inputs=["evaluation_cells", "params:evaluation"],
                outputs="umap_coordinates",
                name="compute_umaps_node",
            ),
            Node(
                plot_umaps,
                inputs="umap_coordinates",
                outputs="umap_figure",
                name="plot_umaps_node",
            ),
            Node(
                compute_latent_association,
                inputs="evaluation_cells",
                outputs="latent_association",
                name="compute_latent_association_node",
            ),
            Node(
                plot_latent_association,
                inputs="latent_association",
                outputs="latent_association_figure",
                name="plot_latent_association_node",
            ),
            Node(
                score_anomalies,
                inputs=["evaluation_cells", "params:evaluation"],
                outputs="anomaly_scores",
                name="score_anomalies_node",
            ),
            Node(
                plot_anomalies,
                inputs=["umap_coordinates", "anomaly_scores", "params:evaluation"],
                outputs="anomaly_figure",
                name="plot_anomalies_node",
            ),
        ],
        tags="evaluation",
    )
