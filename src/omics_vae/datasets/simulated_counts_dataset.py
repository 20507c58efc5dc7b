"""``SimulatedCountsDataset``: a read-only dataset that simulates raw single-cell counts,
so the project runs offline on a fresh clone.
"""

from __future__ import annotations

from typing import Any

from anndata import AnnData
from kedro.io.core import AbstractDataset, DatasetError

from omics_vae.data.simulate import simulate_counts


class SimulatedCountsDataset(AbstractDataset[AnnData, AnnData]):
    """Loads a simulated raw-count AnnData; see ``omics_vae.data.simulate.simulate_counts``.

    The same arguments give the same data on every machine, so the dataset needs no file.

    Examples:
        Using the YAML API:

        ```yaml
        raw_counts:
          type: omics_vae.datasets.SimulatedCountsDataset
          n_cells: 3000
          n_genes: 2000
          seed: 0
        ```

        Using the Python API:

        >>> from omics_vae.datasets import SimulatedCountsDataset
        >>> adata = SimulatedCountsDataset(n_cells=500, n_genes=300).load()
        >>> adata.shape
        (500, 300)
    """

    def __init__(
        self,
        *,
        n_cells: int = 3000,
        n_genes: int = 2000,
        n_batches: int = 3,
        n_cell_types: int = 6,
        seed: int = 0,
        low_quality_fraction: float = 0.03,
        median_library_size: float = 2500.0,
        batch_effect_sd: float = 0.4,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Creates a new instance of ``SimulatedCountsDataset``.

        Args:
            n_cells: Number of cells.
            n_genes: Number of genes, a few ``MT-`` mitochondrial genes included.
            n_batches: Number of batches (obs ``batch``).
            n_cell_types: Number of cell types (obs ``cell_type``).
            seed: Seed of every random draw.
            low_quality_fraction: Share of damaged cells (few counts, high
                mitochondrial fraction) that quality control should remove.
            median_library_size: Typical total counts of a healthy cell.
            batch_effect_sd: Standard deviation of the per-batch, per-gene log fold
                change.
            metadata: Any arbitrary metadata. Ignored by Kedro, but may be consumed by
                users or plugins such as kedro-viz.
        """
        self._simulation_args: dict[str, Any] = {
            "n_cells": n_cells,
            "n_genes": n_genes,
            "n_batches": n_batches,
            "n_cell_types": n_cell_types,
            "seed": seed,
            "low_quality_fraction": low_quality_fraction,
            "median_library_size": median_library_size,
            "batch_effect_sd": batch_effect_sd,
        }
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return dict(self._simulation_args)

    def load(self) -> AnnData:
        return simulate_counts(**self._simulation_args)

    def save(self, data: AnnData) -> None:
        raise DatasetError(
            "SimulatedCountsDataset is read-only: it generates its data from its arguments "
            "and has no file to write. To use your own data, point 'raw_counts' at a file "
            "in conf/local/catalog.yml (or a Kedro environment), e.g.\n"
            "  raw_counts:\n"
            "    type: omics_vae.datasets.H5ADDataset\n"
            "    filepath: data/01_raw/my_cells.h5ad"
        )

    def _exists(self) -> bool:
        # Always available: it is computed, not read.
        return True
