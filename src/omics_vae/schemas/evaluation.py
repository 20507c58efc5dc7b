"""Schema of ``conf/base/parameters_evaluation.yml``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from omics_vae.params import StrictModel

# The fields of scib_metrics.benchmark.BioConservation and BatchCorrection (scib-metrics
# 0.5). Spelt out rather than read from the dataclasses because importing scib-metrics
# (and jax) takes seconds, and parameters are validated when every Kedro session starts;
# a test keeps these lists equal to the installed dataclasses.
BIO_METRICS = (
    "isolated_labels",
    "nmi_ari_cluster_labels_leiden",
    "nmi_ari_cluster_labels_kmeans",
    "silhouette_label",
    "clisi_knn",
)
BATCH_METRICS = (
    "bras",
    "ilisi_knn",
    "kbet_per_label",
    "graph_connectivity",
    "pcr_comparison",
)

BioMetric = Literal[BIO_METRICS]
BatchMetric = Literal[BATCH_METRICS]


class MetricsParams(StrictModel):
    """scib-metrics to run; names are the fields of BioConservation / BatchCorrection."""

    bio: list[BioMetric] = Field(
        default_factory=lambda: [
            "isolated_labels",
            "nmi_ari_cluster_labels_kmeans",
            "silhouette_label",
            "clisi_knn",
        ],
        description="Bio-conservation metrics; ignored when the data has no cell types.",
    )
    batch: list[BatchMetric] = Field(
        default_factory=lambda: list(BATCH_METRICS), description="Batch-correction metrics."
    )

    @field_validator("bio", "batch")
    @classmethod
    def _no_repeats(cls, names: list[str]) -> list[str]:
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"metrics listed more than once: {repeated}")
        return names

    @model_validator(mode="after")
    def _at_least_one(self) -> MetricsParams:
        if not self.bio and not self.batch:
            raise ValueError("bio and batch are both empty; name at least one metric")
        return self


class BaselineParams(StrictModel):
    """Embeddings benchmarked beside the model's, computed from ``model_input``."""

    pca: bool = Field(True, description="Unintegrated PCA of the log-normalised expression.")
    harmony: bool = Field(
        True, description="Harmony (harmonypy) on that PCA, beside it in the benchmark."
    )
    n_comps: int = Field(30, gt=1, description="Principal components (capped by the data).")


class UmapParams(StrictModel):
    n_neighbors: int = Field(15, ge=2)
    min_dist: float = Field(0.3, ge=0)
    seed: int = 0


class AnomalyParams(StrictModel):
    """Per-cell anomaly score from the corrected latent and the reconstruction error."""

    method: Literal["isolation_forest", "knn"] = "isolation_forest"
    n_neighbors: int = Field(15, ge=1, description="knn: neighbours averaged per cell.")
    reconstruction: Literal["depth_adjusted", "raw"] = Field(
        "depth_adjusted",
        description="Reconstruction error beyond what sequencing depth explains, or as is.",
    )
    combine: Literal["rank", "zscore"] = Field(
        "rank", description="Average of percentile ranks, or of z-scores, of the two scores."
    )
    fraction: float = Field(0.01, ge=0, le=0.5, description="Share of cells flagged.")
    seed: int = 0


class SuggestionParams(StrictModel):
    """Which unlabelled cells to label next (``label_suggestions.csv``)."""

    n_cells: int = Field(50, ge=1, description="Cells suggested, most useful first.")
    uncertainty: Literal["entropy", "margin"] = Field(
        "entropy",
        description=(
            "Entropy of the classifier's probabilities, or the gap between its two most "
            "probable labels."
        ),
    )
    n_clusters: int = Field(
        20, ge=1, description="k-means clusters of the latent the suggestions are spread over."
    )
    seed: int = 0


class EvaluationParams(StrictModel):
    """The ``evaluation`` block: benchmark, pictures, latent statistics, anomalies."""

    splits: list[str] | None = Field(
        None, min_length=1, description="obs['split'] values to evaluate; null = every cell."
    )
    max_cells: int = Field(
        20_000, ge=100, description="Benchmark and UMAPs subsample above this many cells."
    )
    seed: int = Field(0, description="Seed of the subsample and of the PCA baseline.")
    metrics: MetricsParams = MetricsParams()
    neighbors: Literal["exact", "pynndescent"] = Field(
        "exact",
        description="Neighbour search of the benchmark: exact (scikit-learn) or pynndescent.",
    )
    baselines: BaselineParams = BaselineParams()
    umap: UmapParams = UmapParams()
    anomaly: AnomalyParams = AnomalyParams()
    label_suggestions: SuggestionParams = SuggestionParams()
