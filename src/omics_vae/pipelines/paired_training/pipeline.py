"""paired_training: paired model input -> joint VAE, history, curves, model card."""

from kedro.pipeline import Node, Pipeline

from omics_vae.pipelines.paired_training.nodes import (
    make_paired_model_card,
    train_or_reuse_joint_model,
)
from omics_vae.training.reports import history_to_metrics, plot_loss_curves


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_or_reuse_joint_model,
                inputs=[
                    "paired_model_input",
                    "params:paired.training",
                    "params:force_retrain",
                    "trained_models",
                ],
                outputs=["paired_model", "paired_training_history", "paired_training_summary"],
                name="train_joint_model_node",
            ),
            Node(
                make_paired_model_card,
                inputs=[
                    "paired_training_summary",
                    "params:paired.training",
                    "paired_training_history",
                ],
                outputs="paired_model_card",
                name="make_paired_model_card_node",
            ),
            Node(
                history_to_metrics,
                inputs=["paired_training_history", "paired_training_summary"],
                outputs="paired_training_metrics",
                name="paired_history_to_metrics_node",
            ),
            Node(
                plot_loss_curves,
                inputs="paired_training_history",
                outputs="paired_loss_curves",
                name="plot_paired_loss_curves_node",
            ),
        ],
        tags="paired_training",
    )
