"""Normalisation keeps the raw counts beside the log-normalised values."""

from __future__ import annotations

import numpy as np

from omics_vae.processing.normalisation import normalise_counts


class TestNormaliseCounts:
    def test_keeps_counts_and_log_normalises(self, filtered, parameters):
        before = filtered.X.copy()

        normalised = normalise_counts(filtered, parameters["normalisation"]["target_sum"])

        assert normalised.layers["counts"] is filtered.X
        totals = np.expm1(normalised.X.toarray()).sum(axis=1)
        np.testing.assert_allclose(totals, 10_000.0, rtol=1e-4)
        assert "log1p" in normalised.uns
        # The caller's counts are untouched.
        assert (before != filtered.X).nnz == 0
        assert "counts" not in filtered.layers

    def test_values_are_scanpys_and_share_the_counts_structure(self, filtered, parameters):
        import anndata as ad
        import scanpy as sc
        from scipy import sparse

        target_sum = parameters["normalisation"]["target_sum"]
        counts = sparse.csr_matrix(filtered.X)
        filtered.X = counts

        normalised = normalise_counts(filtered, target_sum)

        expected = ad.AnnData(
            sc.pp.normalize_total(filtered, target_sum=target_sum, inplace=False)["X"]
        )
        sc.pp.log1p(expected)
        np.testing.assert_array_equal(normalised.X.toarray(), expected.X.toarray())
        assert np.shares_memory(normalised.X.indices, counts.indices)
        assert np.shares_memory(normalised.X.indptr, counts.indptr)
        assert not np.shares_memory(normalised.X.data, counts.data)
