"""Comparing the variants of a sweep: one row of scores per variant, mean and spread over
seeds per group, seed-paired tests between groups with multiple-testing correction, and a
figure. Kedro-free; the sweep's comparison node calls ``compare_variants``."""

from __future__ import annotations

import fnmatch
import itertools
from typing import Any, Literal

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats
from statsmodels.stats.multitest import multipletests

from omics_vae.evaluation.cells import MODEL as SCIB_MODEL_ROLE
from omics_vae.evaluation.imputation import MODEL_METHOD, imputation_metrics
from omics_vae.evaluation.integration import scib_results_to_metrics

# Training facts carried from each variant's summary into the comparison.
TRAINING_COLUMNS = {
    "wall_time_s": "training/wall_time_s",
    "best_val_loss": "training/best_val_loss",
    "epochs": "training/epochs",
}
IDENTITY_COLUMNS = ("sweep", "group", "variant", "seed", "model", "reused_from_run")
# Scores where lower is better; every other score is better higher.
LOWER_IS_BETTER = ("training/wall_time_s", "training/best_val_loss", "training/epochs")


def single_cell_scores(scib_results: pd.DataFrame) -> dict[str, float]:
    """The model's scib scores (``scib/<metric>``), without the baselines'."""
    model_rows = scib_results[scib_results["role"] == SCIB_MODEL_ROLE]
    return {key: value["value"] for key, value in scib_results_to_metrics(model_rows).items()}


def paired_scores(imputation_summary: pd.DataFrame) -> dict[str, float]:
    """The joint VAE's imputation scores (``paired/<direction>/<metric>``)."""
    model_rows = imputation_summary[imputation_summary["method"] == MODEL_METHOD]
    return {
        key.replace(f"/{MODEL_METHOD}/", "/"): value["value"]
        for key, value in imputation_metrics(model_rows).items()
    }


def collect_variant_scores(**inputs: Any) -> pd.DataFrame:
    """One row per variant: its identity, its model's evaluation scores and training facts.

    Args:
        inputs: For each variant ``v``: ``v__sweep`` (its ``sweep`` parameter block),
            ``v__scores`` (its model's scores, ``{metric: value}``: what its family's
            ``score_row`` makes of its evaluation, e.g. ``single_cell_scores``) and
            ``v__training_summary``.
    """
    rows = []
    for variant in _variants(inputs):
        block = inputs[f"{variant}__sweep"]
        summary = inputs[f"{variant}__training_summary"]
        scores = inputs[f"{variant}__scores"]
        rows.append(
            {
                "sweep": block["name"],
                "group": block["group"],
                "variant": block["variant"],
                "seed": block["seed"],
                "model": summary["model"],
                "reused_from_run": summary.get("reused_from_run"),
                **scores,
                **{column: summary[key] for key, column in TRAINING_COLUMNS.items()},
            }
        )
    return pd.DataFrame(rows)


def _variants(inputs: dict[str, Any]) -> list[str]:
    suffix = "__sweep"
    return [key[: -len(suffix)] for key in inputs if key.endswith(suffix)]


def score_columns(scores: pd.DataFrame) -> list[str]:
    return [c for c in scores.columns if c not in IDENTITY_COLUMNS and scores[c].notna().any()]


def summarise_groups(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every score, one row per variant group."""
    columns = score_columns(scores)
    grouped = scores.groupby("group", sort=False)
    summary = grouped[columns].agg(["mean", "std"])
    summary.columns = [f"{metric} {statistic}" for metric, statistic in summary.columns]
    summary.insert(0, "n_seeds", grouped["seed"].nunique())
    summary.insert(0, "model", grouped["model"].first())
    return summary.reset_index()


def compare_groups_pairwise(
    scores: pd.DataFrame,
    metrics: list[str],
    test: Literal["ttest", "wilcoxon"] = "ttest",
    correction: str = "fdr_bh",
) -> pd.DataFrame:
    """A paired test on seed-matched scores for every pair of groups and metric.

    Returns:
        One row per (metric, group A, group B): the seeds both share, the mean difference
        A - B, the test's p-value and the p-value corrected over all pairs of that metric.
    """
    rows = []
    groups = list(dict.fromkeys(scores["group"]))
    for metric in metrics:
        if metric not in scores:
            continue
        table = scores.pivot_table(index="seed", columns="group", values=metric)
        for first, second in itertools.combinations(groups, 2):
            pairs = table[[first, second]].dropna() if {first, second} <= set(table) else None
            n_seeds = 0 if pairs is None else len(pairs)
            difference = (pairs[first] - pairs[second]) if n_seeds else pd.Series(dtype=float)
            rows.append(
                {
                    "metric": metric,
                    "group_a": first,
                    "group_b": second,
                    "n_seeds": n_seeds,
                    "mean_difference": float(difference.mean()) if n_seeds else np.nan,
                    "test": test,
                    "p_value": _paired_p_value(difference, test),
                }
            )
    result = pd.DataFrame(
        rows,
        columns=["metric", "group_a", "group_b", "n_seeds", "mean_difference", "test", "p_value"],
    )
    result["p_adjusted"] = np.nan
    for _, index in result.groupby("metric").groups.items():
        p_values = result.loc[index, "p_value"]
        valid = p_values.notna()
        if valid.any():
            corrected = multipletests(p_values[valid], method=correction)[1]
            result.loc[p_values[valid].index, "p_adjusted"] = corrected
    result["correction"] = correction
    return result


def _paired_p_value(difference: pd.Series, test: str) -> float:
    # Fewer than two seed-matched pairs, or identical scores, give no test.
    if len(difference) < 2 or np.allclose(difference, 0):
        return np.nan
    if test == "wilcoxon":
        return float(stats.wilcoxon(difference).pvalue)
    return float(stats.ttest_1samp(difference, 0.0).pvalue)


def plot_comparison(scores: pd.DataFrame, metrics: list[str]) -> Figure:
    """Per metric: a bar for each group's mean over seeds, and a point per seed."""
    metrics = [metric for metric in metrics if metric in scores]
    groups = list(dict.fromkeys(scores["group"]))
    figure, axes = plt.subplots(
        1, len(metrics), figsize=(max(3.2, 0.7 * len(groups) + 1.5) * len(metrics), 3.8)
    )
    for axis, metric in zip(np.atleast_1d(axes), metrics, strict=True):
        means = scores.groupby("group", sort=False)[metric].mean().reindex(groups)
        positions = np.arange(len(groups))
        axis.bar(positions, means.to_numpy(), color="#9ecae1", edgecolor="#3182bd")
        for position, group in zip(positions, groups, strict=True):
            values = scores.loc[scores["group"] == group, metric].to_numpy()
            jitter = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
            axis.scatter(position + np.asarray(jitter), values, color="#08519c", s=14, zorder=3)
        axis.set_xticks(positions, [_short(group) for group in groups], rotation=40, ha="right")
        better = "lower" if metric in LOWER_IS_BETTER else "higher"
        axis.set_title(f"{metric} ({better} is better)", fontsize=9)
    figure.suptitle(f"Sweep '{scores['sweep'].iloc[0]}': mean over seeds (bars), seeds (points)")
    figure.tight_layout()
    return figure


def _short(group: str) -> str:
    return group.split("__", 1)[-1]


def select_metrics(patterns: list[str], available: list[str]) -> list[str]:
    """The available scores matching the patterns (shell-style: ``paired/*/pearson``)."""
    selected = [name for pattern in patterns for name in fnmatch.filter(available, pattern)]
    if not selected:
        raise ValueError(
            f"None of sweep_comparison.metrics {patterns} matches a score of this sweep "
            f"(scores: {available}). Fix sweep_comparison.metrics in "
            "conf/base/parameters_sweeps.yml."
        )
    return list(dict.fromkeys(selected))


def compare_variants(
    inputs: dict[str, Any],
    metric_patterns: list[str],
    test: Literal["ttest", "wilcoxon"] = "ttest",
    correction: str = "fdr_bh",
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, Figure]:
    """Per-variant scores, per-group summary, pairwise tests and the figure.

    Args:
        inputs: See :func:`collect_variant_scores`.
        metric_patterns: Shell-style patterns of the scores to test (``scib/total``).
        test: ``ttest`` (paired t-test) or ``wilcoxon`` (signed-rank).
        correction: A statsmodels multiple-testing method.
    """
    scores = collect_variant_scores(**inputs)
    metrics = select_metrics(metric_patterns, score_columns(scores))
    summary = summarise_groups(scores)
    tests = compare_groups_pairwise(scores, metrics, test, correction)
    return scores, summary, tests, plot_comparison(scores, metrics)
