"""Highly variable genes: flavors, the cap on n_top_genes, the LOESS span retries and the
batches too small to rank genes in."""

from __future__ import annotations

import logging
import math
import subprocess
import sys

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from omics_vae.processing.annotations import RECORD_KEY
from omics_vae.processing.errors import LOCAL_PARAMETERS_FILE, DataProcessingError
from omics_vae.processing.hvg import (
    batches_left_out,
    loess_genes_needed,
    n_varying_genes,
    select_highly_variable_genes,
)
from tests.printed_fixes import apply, printed_settings
from tests.processing.simulated_counts import as_params

LOGGER = "omics_vae.processing"


class TestSelectHighlyVariableGenes:
    def test_flags_n_top_genes(self, normalised, parameters):
        annotated = select_highly_variable_genes(normalised, as_params(parameters))

        assert annotated.var["highly_variable"].sum() == 50
        assert annotated.n_vars == normalised.n_vars
        assert annotated.uns[RECORD_KEY]["n_highly_variable_genes"] == 50
        assert "highly_variable" not in normalised.var

    def test_subset_keeps_only_highly_variable_genes(self, normalised, parameters):
        parameters["hvg"]["subset"] = True

        annotated = select_highly_variable_genes(normalised, as_params(parameters))

        assert annotated.n_vars == 50
        assert annotated.layers["counts"].shape == (normalised.n_obs, 50)
        assert normalised.n_vars == 198

    def test_caps_n_top_genes_at_the_number_of_genes(self, normalised, parameters, caplog):
        parameters["hvg"]["n_top_genes"] = 5_000

        with caplog.at_level(logging.WARNING, logger=LOGGER):
            annotated = select_highly_variable_genes(normalised, as_params(parameters))

        assert "n_top_genes = 5000 exceeds the 198 genes" in caplog.text
        assert annotated.var["highly_variable"].all()

    def test_seurat_v3_reads_the_raw_counts(self, normalised, parameters):
        annotated = select_highly_variable_genes(normalised, as_params(parameters))

        assert annotated.uns["hvg"]["flavor"] == "seurat_v3"
        assert annotated.uns[RECORD_KEY]["hvg_span"] == 0.3
        # seurat_v3 statistics are of the counts, not of the log-normalised values.
        np.testing.assert_allclose(
            annotated.var["means"],
            np.asarray(normalised.layers["counts"].mean(axis=0)).ravel(),
            rtol=1e-5,
        )
        assert annotated.var["highly_variable_nbatches"].max() == 3

    def test_widens_the_loess_span_when_the_fit_fails(self, normalised, parameters, caplog):
        # Far too narrow for 198 genes: skmisc's LOESS refuses it.
        parameters["hvg"]["span"] = 0.01

        with caplog.at_level(logging.WARNING, logger=LOGGER):
            annotated = select_highly_variable_genes(normalised, as_params(parameters))

        assert annotated.uns[RECORD_KEY]["hvg_span"] == 0.5
        assert annotated.var["highly_variable"].sum() == 50
        assert "data_processing.hvg.span = 0.01" in caplog.text
        assert "Set data_processing.hvg.span: 0.5" in caplog.text

    def test_dispersion_flavor_reads_log_normalised_values(self, normalised, parameters):
        parameters["hvg"]["flavor"] = "seurat"

        annotated = select_highly_variable_genes(normalised, as_params(parameters))

        assert annotated.var["highly_variable"].sum() == 50
        assert "dispersions_norm" in annotated.var
        assert annotated.uns[RECORD_KEY]["hvg_span"] is None


def with_batches(adata: ad.AnnData, batches: dict[str, slice]) -> ad.AnnData:
    """A copy of ``adata`` whose cells in each slice are moved to a new batch."""
    changed = adata.copy()
    batch = changed.obs["batch"].astype(str).to_numpy()
    for name, cells in batches.items():
        batch[cells] = name
    changed.obs["batch"] = pd.Categorical(batch)
    return changed


class TestBatchesTooSmallToRankGenesIn:
    """A batch of one cell crashed the process (segmentation fault in scikit-misc's
    LOESS, called by scanpy's seurat_v3 per batch); it is now left out of the ranking."""

    @pytest.mark.parametrize("flavor", ["seurat_v3", "seurat", "cell_ranger"])
    def test_a_one_cell_batch_is_left_out_of_the_ranking_and_its_cell_kept(
        self, normalised, parameters, flavor, caplog
    ):
        parameters["hvg"]["flavor"] = flavor
        parameters["hvg"]["subset"] = True
        one_cell = with_batches(normalised, {"solo": slice(0, 1)})

        with caplog.at_level(logging.WARNING, logger=LOGGER):
            annotated = select_highly_variable_genes(one_cell, as_params(parameters))

        assert annotated.n_obs == normalised.n_obs
        assert annotated.n_vars == 50
        assert annotated.obs["batch"].iloc[0] == "solo"
        assert annotated.uns[RECORD_KEY]["hvg_batches_left_out"] == {"solo": 1}
        assert "'solo' (1 cell: no variance to rank genes by)" in caplog.text
        assert "their cells kept" in caplog.text
        if flavor == "seurat_v3":
            # Ranked in the three batches that have cells enough.
            assert annotated.var["highly_variable_nbatches"].max() == 3

    def test_the_ranking_is_that_of_the_other_batches(self, normalised, parameters):
        parameters["hvg"]["subset"] = False
        one_cell = with_batches(normalised, {"solo": slice(0, 1)})
        without = normalised[1:].copy()

        annotated = select_highly_variable_genes(one_cell, as_params(parameters))
        expected = select_highly_variable_genes(without, as_params(parameters))

        pd.testing.assert_series_equal(
            annotated.var["highly_variable"], expected.var["highly_variable"]
        )
        assert annotated.uns[RECORD_KEY]["hvg_batches_left_out"] == {"solo": 1}
        assert expected.uns[RECORD_KEY]["hvg_batches_left_out"] == {}

    def test_a_batch_with_too_few_varying_genes_for_the_loess_is_left_out(self, parameters):
        # Two cells that differ in two genes: LOESS would get 2 points.
        counts = np.ones((6, 30), dtype=np.float32)
        counts[:4] = np.random.default_rng(0).poisson(3.0, (4, 30))
        counts[4, :2] = 5
        batches = pd.Series(["a"] * 4 + ["tiny"] * 2)

        left_out = batches_left_out(sparse.csr_matrix(counts), batches, as_params(parameters).hvg)

        assert list(left_out) == ["tiny"]
        n_cells, reason = left_out["tiny"]
        assert n_cells == 2
        assert "2 genes vary; seurat_v3's LOESS fit needs at least 3" in reason

    def test_no_batch_to_rank_genes_in_is_refused_naming_the_keys(self, normalised, parameters):
        every_cell_alone = normalised.copy()
        every_cell_alone.obs["batch"] = pd.Categorical(every_cell_alone.obs_names)

        with pytest.raises(DataProcessingError) as refused:
            select_highly_variable_genes(every_cell_alone, as_params(parameters))

        message = str(refused.value)
        assert "No batch of obs['batch'] (data_processing.batch_key" in message
        assert "data_processing.hvg.flavor: seurat_v3" in message
        assert f"Set data_processing.batch_key in {LOCAL_PARAMETERS_FILE}" in message
        assert "... and" in message  # the batches listed are a few examples

    def test_a_span_too_narrow_for_a_batch_is_widened_not_crashed_on(
        self, normalised, parameters, caplog
    ):
        # A batch of two cells that differ in 20 genes: a window of 0.01 holds none.
        parameters["hvg"]["span"] = 0.01
        small = with_batches(normalised, {"small": slice(10, 12)})
        counts = small.layers["counts"].toarray()
        counts[11] = counts[10]
        counts[11, :20] += 1
        small.layers["counts"] = sparse.csr_matrix(counts)

        with caplog.at_level(logging.INFO, logger=LOGGER):
            annotated = select_highly_variable_genes(small, as_params(parameters))

        assert annotated.uns[RECORD_KEY]["hvg_span"] in {0.5, 0.7, 1.0}
        assert annotated.uns[RECORD_KEY]["hvg_batches_left_out"] == {}
        assert "LOESS spans [0.01] skipped: a batch has only 20 genes that vary" in caplog.text

    def test_a_dispersion_flavor_leaves_out_the_batch_it_fails_in(
        self, normalised, parameters, caplog
    ):
        # In two cells cell_ranger's mean bins (percentiles) repeat: scanpy refuses the
        # whole ranking with a ValueError; the batch is left out and the others rank.
        parameters["hvg"]["flavor"] = "cell_ranger"
        tiny = with_batches(normalised, {"tiny": slice(0, 2)})

        with caplog.at_level(logging.WARNING, logger=LOGGER):
            annotated = select_highly_variable_genes(tiny, as_params(parameters))

        assert annotated.uns[RECORD_KEY]["hvg_batches_left_out"] == {"tiny": 2}
        assert "'tiny' (2 cells: Bin edges must be unique" in caplog.text
        assert annotated.var["highly_variable"].sum() == 50

    def test_a_batch_in_which_no_gene_varies_is_left_out(self, normalised, parameters):
        parameters["hvg"]["flavor"] = "seurat"
        twins = with_batches(normalised, {"twins": slice(0, 2)})
        values = twins.X.toarray()
        values[1] = values[0]
        twins.X = sparse.csr_matrix(values)

        annotated = select_highly_variable_genes(twins, as_params(parameters))

        assert annotated.uns[RECORD_KEY]["hvg_batches_left_out"] == {"twins": 2}
        assert annotated.var["highly_variable"].sum() == 50

    @pytest.mark.parametrize("layout", [np.asarray, sparse.csr_matrix])
    def test_varying_genes_count_implicit_zeros(self, layout):
        counts = np.array([[0, 1, 2, 0], [0, 1, 0, 0], [0, 1, 2, 3]], dtype=np.float32)

        assert n_varying_genes(layout(counts)) == 2
        assert n_varying_genes(layout(counts[:1])) == 0

    @pytest.mark.parametrize("span", [0.01, 0.05, 0.1, 0.25, 0.3, 0.33, 0.5, 0.7, 1.0])
    def test_the_genes_needed_leave_the_loess_a_point_per_window(self, span):
        needed = loess_genes_needed(span)

        # scanpy could count a couple of barely varying genes as constant.
        assert math.floor((needed - 2) * span) >= 1


LOESS_FIT = """
import sys
import numpy as np
from skmisc.loess import loess
n, span = int(sys.argv[1]), float(sys.argv[2])
x = np.random.default_rng(0).normal(size=n)
try:
    loess(x, x**2, span=span, degree=2).fit()
except ValueError:
    pass
"""


def test_the_loess_crashes_below_one_point_per_window_and_refuses_above():
    """What the guard is for: scikit-misc's LOESS kills the process (it cannot be caught)
    when ``floor(span * points)`` is 0, and raises a ValueError from 1 on."""

    def exit_code(n_points: int, span: float) -> int:
        fit = [sys.executable, "-c", LOESS_FIT, str(n_points), str(span)]
        return subprocess.run(fit, capture_output=True, timeout=120, check=False).returncode

    assert exit_code(3, 0.3) != 0  # a segmentation fault: 0.9 points per window
    assert exit_code(loess_genes_needed(0.3) - 2, 0.3) == 0


def test_a_batch_category_without_cells_is_not_ranked_in(normalised, parameters):
    """scanpy's dispersion flavors rank genes in every category of the batch column; one
    without cells made them fail (IndexError)."""
    parameters["hvg"]["flavor"] = "seurat"
    normalised.obs["batch"] = normalised.obs["batch"].cat.add_categories(["unused"])

    annotated = select_highly_variable_genes(normalised, as_params(parameters))

    assert annotated.var["highly_variable"].sum() == 50
    assert "unused" not in annotated.obs["batch"].cat.categories


def test_a_flavor_that_fails_in_every_batch_prints_one_that_works(normalised, parameters):
    parameters["hvg"].update(flavor="cell_ranger", n_top_genes=5)
    few_genes = normalised[:, 5:13].copy()  # 8 genes: cell_ranger's 19 mean bins repeat

    with pytest.raises(DataProcessingError) as refused:
        select_highly_variable_genes(few_genes, as_params(parameters))

    message = str(refused.value)
    assert "cell_ranger ranking of highly variable genes fails in every batch" in message
    settings = printed_settings(message)
    assert settings == {"data_processing.hvg.flavor": "seurat_v3"}
    fixed = apply(settings, {"data_processing": parameters})["data_processing"]
    annotated = select_highly_variable_genes(few_genes, as_params(fixed))
    assert annotated.var["highly_variable"].sum() == 5
