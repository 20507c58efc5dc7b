"""Schema of the ``paired`` block (``conf/base/parameters_paired.yml``): one sub-block per
stage of the paired pipelines."""

from __future__ import annotations

from omics_vae.params import StrictModel
from omics_vae.schemas.paired_embedding import PairedEmbeddingParams
from omics_vae.schemas.paired_evaluation import PairedEvaluationParams
from omics_vae.schemas.paired_processing import PairedProcessingParams
from omics_vae.schemas.paired_training import PairedTrainingParams


class PairedParams(StrictModel):
    processing: PairedProcessingParams = PairedProcessingParams()
    training: PairedTrainingParams = PairedTrainingParams()
    embedding: PairedEmbeddingParams = PairedEmbeddingParams()
    evaluation: PairedEvaluationParams = PairedEvaluationParams()
