"""paired_evaluation: imputation quality on held-out samples vs baselines, as tables,
figures and MLflow metrics."""

from kedro.pipeline import Node, Pipeline

from omics_vae.pipelines.paired_evaluation.nodes import (
    imputation_metrics,
    plot_best_worst_features,
    plot_feature_histograms,
    plot_imputation_summary,
    predict_held_out,
    score_imputations,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                predict_held_out,
                inputs=[
                    "paired_model_input",
                    "paired_imputed",
                    "paired_scalers",
                    "params:paired.evaluation",
                ],
                outputs="paired_predictions",
                name="predict_held_out_node",
            ),
            Node(
                score_imputations,
                inputs="paired_predictions",
                outputs=[
                    "paired_feature_scores",
                    "paired_sample_scores",
                    "paired_imputation_summary",
                ],
                name="score_imputations_node",
            ),
            Node(
                imputation_metrics,
                inputs="paired_imputation_summary",
                outputs="paired_imputation_metrics",
                name="paired_imputation_metrics_node",
            ),
            Node(
                plot_imputation_summary,
                inputs="paired_imputation_summary",
                outputs="paired_imputation_figure",
                name="plot_imputation_summary_node",
            ),
            Node(
                plot_feature_histograms,
                inputs="paired_feature_scores",
                outputs="paired_feature_histograms",
                name="plot_feature_histograms_node",
            ),
            Node(
                plot_best_worst_features,
                inputs=["paired_predictions", "paired_feature_scores", "params:paired.evaluation"],
                outputs="paired_feature_scatter",
                name="plot_best_worst_features_node",
            ),
        ],
        tags="paired_evaluation",
    )
