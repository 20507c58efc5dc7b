"""UMAP layouts of the benchmarked embeddings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from omics_vae.evaluation.umaps import compute_umaps

from .conftest import N_CELLS, validated


class TestUmaps:
    def test_one_seeded_layout_per_embedding(self, evaluation_cells, parameters):
        first = compute_umaps(evaluation_cells, validated(parameters).umap)
        second = compute_umaps(evaluation_cells, validated(parameters).umap)

        assert len(first) == 2 * N_CELLS
        assert first.groupby("embedding").size().to_dict() == {"invae": N_CELLS, "pca": N_CELLS}
        assert list(first.columns) == [
            "cell", "embedding", "role", "umap_1", "umap_2", "batch", "cell_type"
        ]  # fmt: skip
        pd.testing.assert_frame_equal(first, second)
        # The model's layout separates the cell types: centroids far apart.
        model = first[first["embedding"] == "invae"]
        centroids = model.groupby("cell_type")[["umap_1", "umap_2"]].mean().to_numpy()
        spread = model.groupby("cell_type")[["umap_1", "umap_2"]].std().to_numpy().max()
        gaps = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
        assert gaps[np.triu_indices(3, 1)].min() > 3 * spread
