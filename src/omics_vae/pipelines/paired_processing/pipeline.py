"""paired_processing: two raw tables -> paired model input, scalers and reports."""

from kedro.pipeline import Node, Pipeline

from omics_vae.pipelines.paired_processing.nodes import (
    align_platforms,
    clean_platforms,
    scale_platforms,
    split_samples,
    transform_platforms,
)


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(
                align_platforms,
                inputs=["platform_a_raw", "platform_b_raw", "params:paired.processing"],
                outputs=["paired_aligned_a", "paired_aligned_b", "paired_alignment_report"],
                name="align_platforms_node",
            ),
            Node(
                split_samples,
                inputs=["paired_aligned_a", "params:paired.processing"],
                outputs="paired_split",
                name="split_paired_samples_node",
            ),
            Node(
                clean_platforms,
                inputs=[
                    "paired_aligned_a",
                    "paired_aligned_b",
                    "paired_split",
                    "params:paired.processing",
                ],
                outputs=["paired_clean_a", "paired_clean_b", "paired_dropped_features"],
                name="clean_platforms_node",
            ),
            Node(
                transform_platforms,
                inputs=[
                    "paired_clean_a",
                    "paired_clean_b",
                    "paired_split",
                    "params:paired.processing",
                ],
                outputs=["paired_transformed_a", "paired_transformed_b"],
                name="transform_platforms_node",
            ),
            Node(
                scale_platforms,
                inputs=[
                    "paired_transformed_a",
                    "paired_transformed_b",
                    "paired_split",
                    "params:paired.processing",
                ],
                outputs=["paired_model_input", "paired_scalers"],
                name="scale_platforms_node",
            ),
        ],
        tags="paired_processing",
    )
