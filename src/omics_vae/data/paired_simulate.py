"""A simulated paired two-platform data set: the embedded default of the paired pipelines.

Shared latent factors are mapped non-linearly onto two platforms that measure the same
samples with their own feature counts, scales, noise and missing values, the way two
proteomics assays (or RNA and surface protein) measure the same biology. A few samples
are measured on one platform only, and one feature per platform is mostly missing, so
the alignment report and the missing-feature filter have something to do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

ID_COLUMN = "sample_id"


def simulate_paired_tables(
    *,
    n_samples: int = 600,
    n_features_a: int = 200,
    n_features_b: int = 60,
    n_factors: int = 8,
    missing_fraction: float = 0.03,
    n_unpaired: int = 10,
    noise_a: float = 0.3,
    noise_b: float = 0.3,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two tables measuring (mostly) the same samples on two platforms.

    Platform A is intensity-like (log-normal around ``2**10``, analysed after ``log2``);
    platform B is a saturating, non-linear readout on another scale. Both depend on the
    same ``n_factors`` latent factors.

    Args:
        n_samples: Samples measured on both platforms.
        n_features_a: Features of platform A.
        n_features_b: Features of platform B.
        n_factors: Shared latent factors.
        missing_fraction: Share of values missing at random in each table.
        n_unpaired: Extra samples measured on only one platform (each table gets this many
            of its own, which the alignment drops).
        noise_a: Standard deviation of platform A's noise, on the log2 scale.
        noise_b: Standard deviation of platform B's noise, relative to its signal.
        seed: Seed of every random draw.

    Returns:
        ``(table_a, table_b)``: DataFrames with the sample ID in the first column
        (``sample_id``), one feature per further column, rows in different orders.
    """
    rng = np.random.default_rng(seed)
    n_total = n_samples + 2 * n_unpaired
    # Clustered factors (a few sample groups) make the structure worth a latent model.
    centres = rng.normal(0.0, 1.5, size=(4, n_factors))
    groups = rng.integers(0, len(centres), size=n_total)
    factors = centres[groups] + rng.normal(0.0, 0.7, size=(n_total, n_factors))

    hidden = np.tanh(factors @ rng.normal(0, 1 / np.sqrt(n_factors), (n_factors, 32)))
    log2_a = 10.0 + 1.5 * hidden @ rng.normal(0, 1 / np.sqrt(32), (32, n_features_a))
    log2_a += rng.normal(0.0, noise_a, size=log2_a.shape)
    values_a = np.exp2(log2_a)

    linear_b = factors @ rng.normal(0, 1 / np.sqrt(n_factors), (n_factors, n_features_b))
    signal_b = np.logaddexp(0.0, 2.0 * linear_b) + 0.5 * np.sin(linear_b)
    scale_b = rng.uniform(5.0, 50.0, size=n_features_b)
    values_b = scale_b * (signal_b + 0.1) * (1.0 + rng.normal(0.0, noise_b, signal_b.shape))
    values_b = np.clip(values_b, 0.0, None)

    ids = np.array([f"S{i:05d}" for i in range(n_total)])
    only_a = slice(n_samples, n_samples + n_unpaired)
    only_b = slice(n_samples + n_unpaired, n_total)
    rows_a = np.r_[np.arange(n_samples), np.arange(n_total)[only_a]]
    rows_b = np.r_[np.arange(n_samples), np.arange(n_total)[only_b]]
    table_a = _table(ids[rows_a], values_a[rows_a], "A", missing_fraction, rng)
    table_b = _table(ids[rows_b], values_b[rows_b], "B", missing_fraction, rng)
    return table_a, table_b


def _table(
    ids: np.ndarray,
    values: np.ndarray,
    prefix: str,
    missing_fraction: float,
    rng: np.random.Generator,
) -> pd.DataFrame:
    values = values.copy()
    values[rng.random(values.shape) < missing_fraction] = np.nan
    # One feature the missing-feature filter should drop.
    values[rng.random(len(values)) < 0.6, -1] = np.nan
    columns = [f"{prefix}{j:03d}" for j in range(values.shape[1])]
    table = pd.DataFrame(values.round(4), columns=columns)
    table.insert(0, ID_COLUMN, ids)
    return table.iloc[rng.permutation(len(table))].reset_index(drop=True)
