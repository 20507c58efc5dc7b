"""The single-cell evaluation's figures."""

from __future__ import annotations

import pandas as pd

from omics_vae.evaluation.anomalies import score_anomalies
from omics_vae.evaluation.figures import plot_anomalies, plot_latent_association, plot_umaps
from omics_vae.evaluation.preparation import prepare_evaluation_cells
from omics_vae.evaluation.statistics import compute_latent_association

from .conftest import N_CELLS, validated, with_outlier

# ---- UMAPs ------------------------------------------------------------------------------


class TestUmapGrid:
    def test_grid_has_a_row_per_embedding_and_a_column_per_colouring(self, evaluation_cells):
        coordinates = _fake_umaps(evaluation_cells)

        figure = plot_umaps(coordinates)

        panels = [axis for axis in figure.get_axes() if axis.get_title()]
        assert [axis.get_title() for axis in panels] == [
            "invae — batch",
            "invae — cell type",
            "pca — batch",
            "pca — cell type",
        ]
        legend_titles = [axis.get_legend().get_title().get_text() for axis in panels[:2]]
        assert legend_titles == ["batch", "cell type"]
        assert [t.get_text() for t in panels[1].get_legend().get_texts()] == ["B", "NK", "T"]

    def test_without_cell_types_only_batch_is_drawn(self, evaluation_cells):
        coordinates = _fake_umaps(evaluation_cells)
        coordinates["cell_type"] = None

        figure = plot_umaps(coordinates)

        assert [axis.get_title() for axis in figure.get_axes()] == [
            "invae — batch",
            "pca — batch",
        ]


def _fake_umaps(cells) -> pd.DataFrame:
    """UMAP-shaped coordinates without the cost of a UMAP."""
    frames = []
    for name, key in cells.uns["evaluation"]["embeddings"].items():
        frames.append(
            pd.DataFrame(
                {
                    "cell": cells.obs_names,
                    "embedding": name,
                    "role": "model" if name == "invae" else "baseline",
                    "umap_1": cells.obsm[key][:, 0],
                    "umap_2": cells.obsm[key][:, 1],
                    "batch": cells.obs["batch"].astype(str).to_numpy(),
                    "cell_type": cells.obs["cell_type"].astype(str).to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


# ---- latent association -----------------------------------------------------------------


def test_heat_map_has_a_panel_per_latent(evaluation_cells):
    figure = plot_latent_association(compute_latent_association(evaluation_cells))

    panels = [axis for axis in figure.get_axes() if axis.get_ylabel().endswith("dimension")]
    assert [axis.get_ylabel() for axis in panels] == ["z_i dimension", "z_s dimension"]
    assert panels[0].get_images()[0].get_array().shape == (8, 2)
    assert panels[1].get_images()[0].get_array().shape == (4, 2)


# ---- anomalies --------------------------------------------------------------------------


def test_figure_rings_the_flagged_cells(embeddings, model_input, parameters):
    cells = prepare_evaluation_cells(with_outlier(embeddings), model_input, validated(parameters))
    scores = score_anomalies(cells, validated(parameters).anomaly)

    figure = plot_anomalies(_fake_umaps(cells), scores, validated(parameters).anomaly)

    axis = figure.get_axes()[0]
    coloured, ringed = axis.collections[:2]
    assert len(coloured.get_offsets()) == N_CELLS
    assert len(ringed.get_offsets()) == 3
    assert "top 1.0% flagged" in axis.get_title()
    assert "flagged (3 of 3 in view)" in axis.get_legend().get_texts()[0].get_text()
