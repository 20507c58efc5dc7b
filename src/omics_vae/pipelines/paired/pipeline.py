"""The paired family as a whole: processing -> training -> embedding -> evaluation."""

from kedro.pipeline import Pipeline

from omics_vae.pipelines import (
    paired_embedding,
    paired_evaluation,
    paired_processing,
    paired_training,
)


def create_pipeline(**kwargs) -> Pipeline:
    return (
        paired_processing.create_pipeline()
        + paired_training.create_pipeline()
        + paired_embedding.create_pipeline()
        + paired_evaluation.create_pipeline()
    )
