"""The sweep comparison: scores per variant, summary over seeds, seed-paired tests (the
library, and the node that calls it)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from omics_vae.evaluation.comparison import (
    collect_variant_scores,
    compare_groups_pairwise,
    single_cell_scores,
    summarise_groups,
)
from omics_vae.pipelines.sweep.nodes import compare_variants
from omics_vae.schemas.sweep import SweepComparisonParams

PARAMS = SweepComparisonParams(
    metrics=["scib/total", "training/best_val_loss"], test="ttest", correction="fdr_bh"
)


def _scib_table(total: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"embedding": "X_invae", "role": "model", "Total": total, "iLISI": total / 2},
            {"embedding": "X_pca", "role": "baseline", "Total": 0.1, "iLISI": 0.05},
        ]
    )


def _inputs(totals: dict[str, list[float]]) -> dict:
    inputs = {}
    for group, values in totals.items():
        for seed, total in enumerate(values):
            variant = f"s__{group}__seed_{seed}"
            inputs[f"{variant}__sweep"] = {
                "name": "s",
                "variant": variant,
                "group": f"s__{group}",
                "seed": seed,
                "overrides": {},
            }
            inputs[f"{variant}__scores"] = single_cell_scores(_scib_table(total))
            inputs[f"{variant}__training_summary"] = {
                "model": "invae",
                "wall_time_s": 10.0 + seed,
                "best_val_loss": 100.0 - total,
                "epochs": 5,
                "reused_from_run": None,
            }
    return inputs


def test_one_row_per_variant_with_the_models_scores_in_declaration_order():
    scores = collect_variant_scores(**_inputs({"b": [0.5, 0.6], "a": [0.4, 0.45]}))
    assert list(scores["variant"]) == [
        "s__b__seed_0",
        "s__b__seed_1",
        "s__a__seed_0",
        "s__a__seed_1",
    ]
    assert list(scores["scib/total"]) == [0.5, 0.6, 0.4, 0.45]
    assert "scib/X_pca/total" not in scores  # baselines stay out of the comparison
    assert list(scores["training/wall_time_s"]) == [10.0, 11.0, 10.0, 11.0]


def test_summary_gives_mean_and_standard_deviation_over_seeds():
    summary = summarise_groups(
        collect_variant_scores(**_inputs({"a": [0.4, 0.6], "b": [0.7, 0.7]}))
    )
    row = summary.set_index("group").loc["s__a"]
    assert row["n_seeds"] == 2
    assert row["scib/total mean"] == pytest.approx(0.5)
    assert row["scib/total std"] == pytest.approx(np.std([0.4, 0.6], ddof=1))


def test_pairwise_tests_are_seed_matched_and_corrected():
    totals = {
        "a": [0.50, 0.55, 0.60, 0.52],
        "b": [0.40, 0.47, 0.49, 0.45],
        "c": [0.51, 0.50, 0.61, 0.50],
    }
    scores = collect_variant_scores(**_inputs(totals))
    tests = compare_groups_pairwise(scores, ["scib/total"])
    assert len(tests) == 3
    a_vs_b = tests.set_index(["group_a", "group_b"]).loc[("s__a", "s__b")]
    expected = stats.ttest_rel(totals["a"], totals["b"]).pvalue
    assert a_vs_b["p_value"] == pytest.approx(expected)
    assert a_vs_b["n_seeds"] == 4
    assert a_vs_b["mean_difference"] == pytest.approx(
        np.mean(np.subtract(totals["a"], totals["b"]))
    )
    assert (tests["p_adjusted"] >= tests["p_value"]).all()
    wilcoxon = compare_groups_pairwise(scores, ["scib/total"], test="wilcoxon")
    assert wilcoxon["p_value"].between(0, 1).all()


def test_unmatched_seeds_give_no_p_value():
    inputs = _inputs({"a": [0.5, 0.6], "b": [0.4]})
    tests = compare_groups_pairwise(collect_variant_scores(**inputs), ["scib/total"])
    assert tests.loc[0, "n_seeds"] == 1
    assert np.isnan(tests.loc[0, "p_value"])


def test_compare_variants_returns_tables_and_a_figure():
    scores, summary, tests, figure = compare_variants(
        PARAMS, **_inputs({"a": [0.5, 0.6], "b": [0.4, 0.45]})
    )
    assert len(scores) == 4
    assert len(summary) == 2
    assert set(tests["metric"]) == {"scib/total", "training/best_val_loss"}
    assert len(figure.axes) == 2
