"""``SimulatedCountsDataset``: a read-only dataset that simulates raw single-cell counts,
so the project runs offline on a fresh clone.
"""

from __future__ import annotations

from typing import Any

from anndata import AnnData
from kedro.io.core import AbstractDataset, DatasetError

from omics_vae.data.simulate import simulate_counts
from omics_vae.datasets._simulation import bind_simulation_args


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

    def __init__(self, *, metadata: dict[str, Any] | None = None, **simulation_args: Any) -> None:
        """Creates a new instance of ``SimulatedCountsDataset``.

        Args:
            metadata: Any arbitrary metadata. Ignored by Kedro, but may be consumed by
                users or plugins such as kedro-viz.
            **simulation_args: Keyword arguments of
                ``omics_vae.data.simulate.simulate_counts`` (``n_cells``, ``n_genes``,
                ``n_batches``, ``n_cell_types``, ``seed``, ...); the others take its
                defaults.

        Raises:
            DatasetError: If an argument is not one of ``simulate_counts``.
        """
        self._simulation_args = bind_simulation_args(
            simulate_counts, simulation_args, "SimulatedCountsDataset"
        )
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
