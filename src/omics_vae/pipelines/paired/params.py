"""Schema of the ``paired`` block (``conf/base/parameters_paired.yml``): one sub-block per
stage of the paired pipelines."""

from __future__ import annotations

from omics_vae.params import StrictModel
from omics_vae.pipelines.paired_embedding.params import PairedEmbeddingParams
from omics_vae.pipelines.paired_evaluation.params import PairedEvaluationParams
from omics_vae.pipelines.paired_processing.params import PairedProcessingParams
from omics_vae.pipelines.paired_training.params import PairedTrainingParams


class PairedParams(StrictModel):
    processing: PairedProcessingParams = PairedProcessingParams()
    training: PairedTrainingParams = PairedTrainingParams()
    embedding: PairedEmbeddingParams = PairedEmbeddingParams()
    evaluation: PairedEvaluationParams = PairedEvaluationParams()
