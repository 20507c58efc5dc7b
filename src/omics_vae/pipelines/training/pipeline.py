"""Training pipeline: processed cells → trained model, history, curves, model card."""

from kedro.pipeline import Node, Pipeline

from omics_vae.pipelines.training.nodes import (
    history_to_metrics,
    make_model_card,
    package_model_for_mlflow,
    plot_loss_curves,
    train_or_reuse_model,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                train_or_reuse_model,
                inputs=[
                    "model_input",
                    "params:training",
                    "params:force_retrain",
                    "trained_models",
                    "new_labels",
                ],
                outputs=["model", "training_history", "training_summary"],
                name="train_model_node",
            ),
            Node(
                make_model_card,
                inputs=["training_summary", "params:training", "training_history"],
                outputs="model_card",
                name="make_model_card_node",
            ),
            Node(
                history_to_metrics,
                inputs=["training_history", "training_summary"],
                outputs="training_metrics",
                name="history_to_metrics_node",
            ),
            Node(
                plot_loss_curves,
                inputs="training_history",
                outputs="loss_curves",
                name="plot_loss_curves_node",
            ),
            Node(
                package_model_for_mlflow,
                inputs="model",
                outputs="mlflow_model",
                name="package_model_for_mlflow_node",
            ),
        ],
        tags="training",
    )
