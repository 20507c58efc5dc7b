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
