"""Schema of ``conf/base/parameters_data_processing.yml``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from omics_vae.params import StrictModel


class QCParams(StrictModel):
    """Cell and gene filters, applied in this order: cells, then genes."""

    min_genes_per_cell: int = Field(200, ge=0)
    min_counts_per_cell: int = Field(500, ge=0)
    max_pct_mito: float = Field(20.0, gt=0, le=100)
    min_cells_per_gene: int = Field(3, ge=0)
    mito_prefix: str = Field("MT-", min_length=1, description="Prefix of mitochondrial genes.")


class NormalisationParams(StrictModel):
    """Library-size normalisation before log1p; ``target_sum`` null means the median."""

    target_sum: float | None = Field(1e4, gt=0)


class HVGParams(StrictModel):
    """Highly variable genes; ``seurat_v3`` reads raw counts and needs scikit-misc."""

    n_top_genes: int = Field(1500, gt=0)
    flavor: Literal["seurat_v3", "seurat", "cell_ranger"] = "seurat_v3"
    span: float = Field(
        0.3, gt=0, le=1, description="seurat_v3: fraction of genes in each LOESS window."
    )
    subset: bool = Field(
        True, description="Keep only the highly variable genes in the model input."
    )


class SplitParams(StrictModel):
    """Fractions of cells in train, val and test, and the seed that makes it reproducible."""

    train: float = Field(0.8, gt=0, lt=1)
    val: float = Field(0.1, ge=0, lt=1)
    test: float = Field(0.1, ge=0, lt=1)
    seed: int = 0

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitParams:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must equal 1, got {total:g}")
        return self


class DataProcessingParams(StrictModel):
    """The ``data_processing`` block: raw counts to model input."""

    counts_layer: str | None = Field(
        None, description="Layer holding raw counts; null means adata.X."
    )
    batch_key: str = Field("batch", min_length=1, description="obs column of the batch.")
    cell_type_key: str | None = Field(
        "cell_type", min_length=1, description="obs column of cell types; null if none."
    )
    qc: QCParams = QCParams()
    normalisation: NormalisationParams = NormalisationParams()
    hvg: HVGParams = HVGParams()
    split: SplitParams = SplitParams()
