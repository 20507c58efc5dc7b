"""The parameter schemas (pydantic, no Kedro): one module per pipeline's block, and
the schema of each top-level block keyed by its key in the parameters."""

from omics_vae.schemas.data_processing import DataProcessingParams
from omics_vae.schemas.embedding import EmbeddingParams
from omics_vae.schemas.evaluation import EvaluationParams
from omics_vae.schemas.paired import PairedParams
from omics_vae.schemas.sweep import SweepComparisonParams
from omics_vae.schemas.training import TrainingParams

PARAMETER_SCHEMAS = {
    "data_processing": DataProcessingParams,
    "training": TrainingParams,
    "embedding": EmbeddingParams,
    "evaluation": EvaluationParams,
    "paired": PairedParams,
    "sweep_comparison": SweepComparisonParams,
}
