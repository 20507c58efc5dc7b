"""The few lines a finished ``kedro run`` prints about what it made (no Kedro here).

``RunSummaryHooks`` (``omics_vae.hooks``) gathers the facts from the catalog after a run:
each training summary (trained or reused, epochs, best validation loss), each family's
headline scores against its baselines, the files of the versions the run saved, and the
MLflow run. ``format_run_summary`` turns them into lines no wider than ``WIDTH``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

WIDTH = 100
# Beyond this, a sweep's many trainings are counted rather than listed.
MAX_TRAININGS = 8


@dataclass
class RunFacts:
    """What one run made, as the summary reports it.

    Attributes:
        pipelines: The pipelines run (``__default__`` for a plain ``kedro run``).
        trainings: ``(label, training summary)`` per training node that ran; the label is
            the sweep variant (empty outside a sweep).
        headlines: One line per family evaluation that ran (``single_cell_headline``).
        versions: ``(catalog name, file)`` of each versioned dataset the run saved.
        mlflow_run_id: The run's MLflow run (a sweep's parent run), if tracked.
        mlflow_experiment: Its experiment's name.
    """

    pipelines: Sequence[str]
    trainings: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    headlines: list[str] = field(default_factory=list)
    versions: list[tuple[str, str]] = field(default_factory=list)
    mlflow_run_id: str | None = None
    mlflow_experiment: str | None = None


def training_line(label: str, summary: Mapping[str, Any]) -> str:
    """``Trained invae: 132 epochs, best val loss 609.61, 54 s`` or the reuse it was."""
    who = f"{label}: " if label else ""
    model = summary.get("model", "model")
    loss = summary.get("best_val_loss")
    loss_text = f"best val loss {loss:.2f}" if isinstance(loss, int | float) else "no val loss"
    if summary.get("reused_from_run"):
        return f"{who}Reused {model} from MLflow run {summary['reused_from_run']} ({loss_text})"
    facts = [f"{summary.get('epochs', '?')} epochs", loss_text]
    if isinstance(summary.get("wall_time_s"), int | float):
        facts.append(f"{summary['wall_time_s']:.0f} s")
    if summary.get("resumed_from"):
        facts.append(f"resumed from {summary['resumed_from']}")
    return f"{who}Trained {model}: {', '.join(facts)}"


def single_cell_headline(scib_results: pd.DataFrame) -> str:
    """``scib total: invae 0.399 | pca 0.529 | harmony 0.482`` (model first)."""
    rows = scib_results.sort_values("role", key=lambda role: role != "model")
    scores = " | ".join(
        f"{row.embedding} {row.Total:.3f}" for row in rows.itertuples() if pd.notna(row.Total)
    )
    return f"scib total (higher is better): {scores}"


def label_transfer_headline(label_transfer: pd.DataFrame) -> str:
    """``label transfer accuracy: labelled, held out 0.912 (240 cells) | ...`` (empty
    when the model predicts no labels), training cells left out."""
    scored = label_transfer.dropna(subset=["accuracy"])
    scored = scored[scored["cells"] != "labelled, trained on"]
    parts = [
        f"{row.cells} {row.accuracy:.3f} ({int(row.n_cells):,} cells)"
        for row in scored.itertuples()
    ]
    return f"label transfer accuracy: {' | '.join(parts)}" if parts else ""


def paired_headline(imputation_summary: pd.DataFrame) -> str:
    """Mean per-feature Pearson r of each method, per direction (model first)."""
    parts = []
    for direction, methods in imputation_summary.groupby("direction", sort=True):
        ordered = methods.sort_values("method", key=lambda method: method != "joint_vae")
        scores = " | ".join(f"{row.method} {row.pearson:.3f}" for row in ordered.itertuples())
        parts.append(f"{direction} Pearson r: {scores}")
    return "\n".join(parts)


def format_run_summary(facts: RunFacts) -> str:
    """The summary, a title line and short sections, each line at most ``WIDTH`` wide."""
    lines = [_rule(f" omics-vae: what this run made ({', '.join(facts.pipelines)}) ")]
    trainings = facts.trainings[:MAX_TRAININGS]
    lines += [training_line(label, summary) for label, summary in trainings]
    if len(facts.trainings) > MAX_TRAININGS:
        lines.append(f"... and {len(facts.trainings) - MAX_TRAININGS} more trainings")
    for headline in facts.headlines:
        lines += [line for line in headline.splitlines() if line]
    lines += _version_lines(facts.versions)
    if facts.mlflow_run_id:
        lines.append(f"MLflow run {facts.mlflow_run_id} (experiment '{facts.mlflow_experiment}')")
        lines.append("Browse and compare runs: kedro mlflow ui")
    lines.append(_rule(""))
    return "\n".join(wrapped for line in lines for wrapped in _fit(line))


def _version_lines(versions: Sequence[tuple[str, str]]) -> list[str]:
    """The saved datasets by folder, with the version they share (Kedro's layout:
    ``<folder>/<file name>/<version>/<file name>``)."""
    if not versions:
        return ["No new versions were saved."]
    by_folder: dict[str, list[str]] = {}
    stamps = set()
    for name, path in versions:
        file = PurePosixPath(path)
        by_folder.setdefault(str(file.parents[2]), []).append(name)
        stamps.add(file.parent.name)
    saved_as = f"version {stamps.pop()}" if len(stamps) == 1 else "their versions"
    width = max(map(len, by_folder))
    lines = [f'New versions, saved as {saved_as} (catalog.load("<name>") opens the latest):']
    for folder, names in sorted(by_folder.items()):
        lines += textwrap.wrap(
            f"  {folder:<{width}}  {', '.join(names)}",
            WIDTH,
            subsequent_indent=" " * (width + 4),
            break_long_words=False,
        )
    return lines


def _rule(title: str) -> str:
    return f"{'-' * 3}{title}".ljust(WIDTH, "-") if title else "-" * WIDTH


def _fit(line: str) -> list[str]:
    """``line`` wrapped at ``WIDTH``, continuations indented; words (paths) never split."""
    if len(line) <= WIDTH:
        return [line]
    return textwrap.wrap(
        line, WIDTH, subsequent_indent="    ", break_long_words=False, break_on_hyphens=False
    )
