"""The schema of each top-level parameter block, keyed by its key in the parameters."""

from omics_vae.pipelines.data_processing.params import DataProcessingParams
from omics_vae.pipelines.embedding.params import EmbeddingParams
from omics_vae.pipelines.evaluation.params import EvaluationParams
from omics_vae.pipelines.paired.params import PairedParams
from omics_vae.pipelines.sweep.params import SweepComparisonParams
from omics_vae.pipelines.training.params import TrainingParams

PARAMETER_SCHEMAS = {
    "data_processing": DataProcessingParams,
    "training": TrainingParams,
    "embedding": EmbeddingParams,
    "evaluation": EvaluationParams,
    "paired": PairedParams,
    "sweep_comparison": SweepComparisonParams,
}
