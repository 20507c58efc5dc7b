"""The QC figure."""

from __future__ import annotations

import io

from matplotlib.figure import Figure

from omics_vae.processing.figures import plot_qc_metrics
from omics_vae.processing.qc import filter_cells_and_genes
from tests.processing.simulated_counts import as_params


class TestPlotQCMetrics:
    def test_draws_three_metrics_before_and_after(self, validated, parameters):
        _, metrics, _ = filter_cells_and_genes(validated, as_params(parameters))

        figure = plot_qc_metrics(metrics, as_params(parameters))

        assert isinstance(figure, Figure)
        axes = figure.get_axes()
        assert len(axes) == 6
        titles = [ax.get_title() for ax in axes]
        assert titles[0] == "Total counts per cell, before QC (300 cells)"
        assert titles[3] == f"Total counts per cell, after QC ({metrics['passed_qc'].sum()} cells)"
        assert all(ax.get_ylabel() and ax.get_xlabel() for ax in axes)
        assert [t.get_text() for t in axes[0].get_xticklabels()] == ["batch0", "batch1", "batch2"]
        png = io.BytesIO()
        figure.savefig(png, format="png")
        assert png.getvalue().startswith(b"\x89PNG")
