"""``SimulatedPairedDataset``: one platform of a simulated paired data set, read-only, so
the paired pipelines run offline on a fresh clone.
"""

from __future__ import annotations

from typing import Any, Literal

import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError

from omics_vae.data.paired_simulate import simulate_paired_tables
from omics_vae.datasets._simulation import bind_simulation_args


class SimulatedPairedDataset(AbstractDataset[None, pd.DataFrame]):
    """Loads platform A or B of ``omics_vae.data.paired_simulate.simulate_paired_tables``.

    Two entries with the same arguments and ``platform: a`` / ``platform: b`` give the
    two tables of one simulated paired data set (same samples, same latent factors). The
    table is shaped as a CSV file would be read: the sample ID in the first column.

    Examples:
        Using the YAML API:

        ```yaml
        platform_a_raw:
          type: omics_vae.datasets.SimulatedPairedDataset
          platform: a
          seed: 0
        ```

        Using the Python API:

        >>> from omics_vae.datasets import SimulatedPairedDataset
        >>> table = SimulatedPairedDataset(platform="b", n_samples=50).load()
        >>> table.columns[0]
        'sample_id'
    """

    def __init__(
        self,
        *,
        platform: Literal["a", "b"],
        metadata: dict[str, Any] | None = None,
        **simulation_args: Any,
    ) -> None:
        """Creates a new instance of ``SimulatedPairedDataset``.

        Args:
            platform: Which table to load, ``"a"`` or ``"b"``.
            metadata: Any arbitrary metadata. Ignored by Kedro, but may be consumed by
                users or plugins such as kedro-viz.
            **simulation_args: Keyword arguments of
                ``omics_vae.data.paired_simulate.simulate_paired_tables``
                (``n_samples``, ``n_features_a``, ``n_features_b``, ``seed``, ...); the
                others take its defaults. Entries for platforms ``a`` and ``b`` of one
                data set must give the same ones.

        Raises:
            DatasetError: If ``platform`` is not ``"a"`` or ``"b"``, or an argument is not
                one of ``simulate_paired_tables``.
        """
        if platform not in ("a", "b"):
            raise DatasetError(
                f"SimulatedPairedDataset: platform must be 'a' or 'b', got {platform!r}"
            )
        self._platform = platform
        self._simulation_args = bind_simulation_args(
            simulate_paired_tables, simulation_args, "SimulatedPairedDataset"
        )
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"platform": self._platform, **self._simulation_args}

    def load(self) -> pd.DataFrame:
        table_a, table_b = simulate_paired_tables(**self._simulation_args)
        return table_a if self._platform == "a" else table_b

    def save(self, data: None) -> None:
        raise DatasetError(
            "SimulatedPairedDataset is read-only: it generates its table from its arguments. "
            "To use your own data, point 'platform_a_raw' and 'platform_b_raw' at CSV files "
            "in conf/local/catalog_paired.yml (or a Kedro environment), e.g.\n"
            "  platform_a_raw:\n"
            "    type: pandas.CSVDataset\n"
            "    filepath: data/01_raw/platform_a.csv"
        )

    def _exists(self) -> bool:
        return True
