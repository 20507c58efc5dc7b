"""Benchmark: the data_processing pipeline through Kedro against the same plain scanpy script.

Each measurement is a fresh process whose wall time and peak RSS (``wait4``) are recorded:

- ``plain``: the pipeline's steps as a plain scanpy script (read, QC metrics, filters,
  normalize_total, log1p, seurat_v3 HVGs with ``batch_key``, a stratified split, the QC
  summary CSV and box-plot figure, write_h5ad), with the parameters of
  ``conf/base/parameters_data_processing.yml``.
- ``kedro``: ``KedroSession.create(...).run(pipeline_names=["data_processing"])`` in a
  temporary copy of the project, so parameter validation, hooks, kedro-mlflow tracking
  and versioned writes are all included.
- ``kedro-cli``: ``kedro run --pipelines data_processing`` in the same copy (the path a
  user takes; adds the CLI's plugin discovery to ``kedro``).

The simulated raw counts are generated once per size to an ``.h5ad`` under the work folder
and read by every variant (in Kedro through a ``conf/local`` override of ``raw_counts``),
so data generation is timed by neither side. One untimed warm-up run of each variant
creates the MLflow store and warms the file cache; after that the variants alternate in
order within each repeat.

Usage::

    .venv/bin/python benchmarks/data_processing.py                  # 10k and 100k cells
    .venv/bin/python benchmarks/data_processing.py --cells 10000 --repeats 1
    .venv/bin/python benchmarks/data_processing.py --cells 100000 --profile
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    DATA_LAYERS,
    RESULTS,
    Measurement,
    copy_project,
    machine_facts,
    markdown_table,
    median,
    run_measured,
    self_peak_rss_mib,
    wait_for_quiet,
    write_csv,
    write_report,
)

VARIANTS = ("plain", "kedro", "kedro-cli")
PIPELINE = "data_processing"

# ---- the measured workers --------------------------------------------------------------


def plain_worker(raw: Path, out_dir: Path, result: Path, params: dict[str, Any]) -> None:
    """The data_processing steps as a plain scanpy script; writes phase timings.

    ``params`` is the ``data_processing`` block of the project's parameters, so both sides
    do the same work whatever the project's defaults are.
    """
    phases: dict[str, float] = {}
    clock = _PhaseClock(phases)
    import anndata as ad
    import scanpy as sc

    clock.lap("import")
    adata = ad.read_h5ad(raw)
    clock.lap("read")
    adata, metrics = _plain_qc(adata, sc, params)
    clock.lap("qc")
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=params["normalisation"]["target_sum"])
    sc.pp.log1p(adata)
    clock.lap("normalise")
    hvg = params["hvg"]
    sc.pp.highly_variable_genes(
        adata, flavor=hvg["flavor"], n_top_genes=min(hvg["n_top_genes"], adata.n_vars),
        batch_key=params["batch_key"], layer="counts", span=hvg["span"], subset=hvg["subset"],
    )  # fmt: skip
    clock.lap("hvg")
    adata.obs["split"] = _plain_split(adata.obs, params)
    clock.lap("split")
    out_dir.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(out_dir / "model_input.h5ad")
    clock.lap("write_h5ad")
    _plain_reports(metrics, out_dir, params["batch_key"])
    clock.lap("reports")
    write_report(result, {"phases": phases, "n_cells": adata.n_obs, "n_genes": adata.n_vars})


def _plain_qc(adata: Any, sc: Any, params: dict[str, Any]) -> tuple[Any, Any]:
    qc = params["qc"]
    adata.var["mt"] = adata.var_names.str.startswith(qc["mito_prefix"])
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mt"], percent_top=None, log1p=False, inplace=True)
    obs = adata.obs
    keep = (
        (obs["n_genes_by_counts"] >= qc["min_genes_per_cell"])
        & (obs["total_counts"] >= qc["min_counts_per_cell"])
        & (obs["pct_counts_mt"].fillna(0) <= qc["max_pct_mito"])
    ).to_numpy()
    columns = [params["batch_key"], "n_genes_by_counts", "total_counts", "pct_counts_mt"]
    metrics = obs[columns].assign(passed_qc=keep)
    adata = adata[keep].copy()
    sc.pp.filter_genes(adata, min_cells=qc["min_cells_per_gene"])
    return adata, metrics


def _plain_split(obs: Any, params: dict[str, Any]) -> Any:
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import train_test_split

    split = params["split"]
    held_out, seed = split["val"] + split["test"], split["seed"]
    strata = obs[params["batch_key"]].astype(str) + "|" + obs[params["cell_type_key"]].astype(str)
    positions = np.arange(len(obs))
    _, rest = train_test_split(positions, test_size=held_out, random_state=seed, stratify=strata)
    val, test = train_test_split(
        rest, test_size=split["test"] / held_out, random_state=seed, stratify=strata.iloc[rest]
    )
    labels = np.full(len(obs), "train", dtype=object)
    labels[val], labels[test] = "val", "test"
    return pd.Categorical(labels, categories=["train", "val", "test"])


def _plain_reports(metrics: Any, out_dir: Path, batch_key: str) -> None:
    """The QC summary table and the 2 x 3 box plots the pipeline also writes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    summary = metrics.groupby(batch_key, observed=True)["passed_qc"].agg(["size", "sum"])
    summary.to_csv(out_dir / "qc_summary.csv")
    batches = list(metrics[batch_key].cat.categories)
    stages = (metrics, metrics[metrics["passed_qc"]])
    figure = Figure(figsize=(15, 9), layout="constrained")
    axes = figure.subplots(2, 3, sharey="col")
    for row, frame in enumerate(stages):
        for col, column in enumerate(("total_counts", "n_genes_by_counts", "pct_counts_mt")):
            groups = [frame.loc[frame[batch_key] == b, column].to_numpy() for b in batches]
            axes[row, col].boxplot(groups, tick_labels=batches)
    figure.savefig(out_dir / "qc_metrics.png", dpi=110, bbox_inches="tight")


def kedro_worker(project: Path, result: Path, profile: Path | None) -> None:
    """``KedroSession.run`` of the pipeline; writes phase, node and dataset timings."""
    phases: dict[str, float] = {}
    clock = _PhaseClock(phases)
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(project)
    clock.lap("import+bootstrap")
    timings = _timing_hooks()
    with KedroSession.create(project_path=project) as session:
        session._hook_manager.register(timings)  # benchmark-only: per-node timings
        clock.lap("session_create")
        _run_session(session, profile)
        clock.lap("run")
    clock.lap("session_close")
    write_report(result, {"phases": phases, "nodes": timings.nodes, "io": timings.io})


def _run_session(session: Any, profile: Path | None) -> None:
    if profile is None:
        session.run(pipeline_names=[PIPELINE])
        return
    import cProfile

    profiler = cProfile.Profile()
    profiler.runcall(session.run, pipeline_names=[PIPELINE])
    profiler.dump_stats(profile)


class _PhaseClock:
    """Records the seconds since the previous lap under a name (RSS too, at the end)."""

    def __init__(self, phases: dict[str, float]) -> None:
        self.phases = phases
        self.last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.phases[name] = now - self.last
        self.phases["peak_rss_mib_so_far"] = self_peak_rss_mib()
        self.last = now


def _timing_hooks() -> Any:
    """Kedro hooks recording node run and dataset load/save times (Kedro imported lazily,
    so that the plain worker does not pay for it)."""
    from kedro.framework.hooks import hook_impl

    class KedroTimings:
        def __init__(self) -> None:
            self.nodes: dict[str, float] = {}
            self.io: dict[str, float] = {}
            self._started: dict[str, float] = {}

        @hook_impl
        def before_node_run(self, node: Any) -> None:
            self._started["node:" + node.name] = time.perf_counter()

        @hook_impl
        def after_node_run(self, node: Any) -> None:
            self.nodes[node.name] = time.perf_counter() - self._started["node:" + node.name]

        @hook_impl
        def before_dataset_loaded(self, dataset_name: str) -> None:
            self._started["load:" + dataset_name] = time.perf_counter()

        @hook_impl
        def after_dataset_loaded(self, dataset_name: str) -> None:
            self._stop("load:" + dataset_name)

        @hook_impl
        def before_dataset_saved(self, dataset_name: str) -> None:
            self._started["save:" + dataset_name] = time.perf_counter()

        @hook_impl
        def after_dataset_saved(self, dataset_name: str) -> None:
            self._stop("save:" + dataset_name)

        def _stop(self, key: str) -> None:
            self.io[key] = self.io.get(key, 0.0) + time.perf_counter() - self._started[key]

    return KedroTimings()


def simulate_worker(n_cells: int, n_genes: int, out: Path) -> None:
    """Simulates raw counts once and writes them where every variant reads them."""
    from omics_vae.data.simulate import simulate_counts

    adata = simulate_counts(n_cells=n_cells, n_genes=n_genes, seed=0)
    partial = out.with_suffix(".partial.h5ad")
    adata.write_h5ad(partial)
    partial.rename(out)


# ---- the driver ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.worker:
        _dispatch_worker(args)
        return
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    raws = {n: _raw_counts(work, n, args.genes) for n in args.cells}
    project = copy_project(work / "project")
    _warm_up(project, raws[min(raws)], work, args.variants)
    rows = []
    for n_cells, raw in raws.items():
        rows += _measure_size(project, raw, work, n_cells, args)
    _report(rows, args)
    if args.profile:
        _profile(project, raws[max(raws)], work)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument(
        "--workdir", type=Path, default=Path("/tmp/omics-vae-bench/data_processing"),
        help="Simulated inputs, the project copy, outputs and logs (large files).",
    )  # fmt: skip
    parser.add_argument(
        "--results", type=Path, default=RESULTS,
        help="Folder for the small CSV/Markdown result tables.",
    )  # fmt: skip
    parser.add_argument(
        "--profile", action="store_true",
        help="After measuring, cProfile one Kedro run at the largest size.",
    )  # fmt: skip
    parser.add_argument(
        "--max-busy", type=float, default=0.25,
        help="Before each run, wait until other processes keep less than this share of the "
        "cores busy (the machine may be shared) ...",
    )  # fmt: skip
    parser.add_argument("--max-wait", type=float, default=120, help="... for at most this (s).")
    parser.add_argument("--worker", choices=["plain", "kedro", "simulate"], help=argparse.SUPPRESS)
    parser.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--profile-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--n-cells", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _dispatch_worker(args: argparse.Namespace) -> None:
    if args.worker == "plain":
        plain_worker(args.raw, args.out, args.result, json.loads(args.params))
    elif args.worker == "kedro":
        kedro_worker(args.project, args.result, args.profile_out)
    else:
        simulate_worker(args.n_cells, args.genes, args.out)


def _raw_counts(work: Path, n_cells: int, n_genes: int) -> Path:
    path = work / f"raw_{n_cells}x{n_genes}_seed0.h5ad"
    if not path.exists():
        print(f"simulating {n_cells:,} x {n_genes:,} raw counts -> {path} (not timed)")
        command = [*_worker_command("simulate"), "--n-cells", str(n_cells), "--out", str(path)]
        run_measured(
            [*command, "--genes", str(n_genes)], work / "simulate.json", work / "simulate.log"
        )
    return path


def _worker_command(worker: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", worker]


def _point_raw_counts_at(project: Path, raw: Path) -> None:
    (project / "conf" / "local" / "catalog.yml").write_text(
        f"raw_counts:\n  type: omics_vae.datasets.H5ADDataset\n  filepath: {raw}\n"
    )


def _measure_once(variant: str, project: Path, raw: Path, work: Path) -> Measurement:
    logs = work / "logs"
    result = work / "result.json"
    log = logs / f"{variant}-{raw.stem}-{time.strftime('%H%M%S')}.log"
    env = {**os.environ, "MPLBACKEND": "Agg"}
    if variant == "plain":
        out = work / "plain_out"
        command = [*_worker_command("plain"), "--raw", str(raw), "--out", str(out)]
        command += ["--params", json.dumps(_data_processing_params(project))]
        measurement = run_measured([*command, "--result", str(result)], result, log, env=env)
        shutil.rmtree(out, ignore_errors=True)
        return measurement
    _point_raw_counts_at(project, raw)
    if variant == "kedro":
        command = [*_worker_command("kedro"), "--project", str(project), "--result", str(result)]
    else:
        kedro = Path(sys.executable).parent / "kedro"
        command = [str(kedro), "run", "--pipelines", PIPELINE]
    measurement = run_measured(command, result, log, cwd=project, env=env)
    _drop_versioned_outputs(project)
    return measurement


def _data_processing_params(project: Path) -> dict[str, Any]:
    """The project's ``data_processing`` block, conf/base merged under conf/local."""
    import yaml

    params: dict[str, Any] = {}
    for env in ("base", "local"):
        path = project / "conf" / env / "parameters_data_processing.yml"
        if path.exists():
            params.update(yaml.safe_load(path.read_text()).get(PIPELINE, {}))
    return params


def _drop_versioned_outputs(project: Path) -> None:
    """Keeps /tmp small: 100k-cell model inputs are about 1 GB per version."""
    for layer in DATA_LAYERS:
        for entry in (project / "data" / layer).iterdir():
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()


def _warm_up(project: Path, raw: Path, work: Path, variants: list[str]) -> None:
    """One untimed run of each variant: MLflow store, bytecode and file caches."""
    for variant in variants:
        print(f"warm-up: {variant} on {raw.name} (not timed)", flush=True)
        _measure_once(variant, project, raw, work)


def _measure_size(
    project: Path, raw: Path, work: Path, n_cells: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    rows = []
    variants = list(args.variants)
    for repeat in range(args.repeats):
        order = variants[repeat % len(variants) :] + variants[: repeat % len(variants)]
        for variant in order:
            busy = wait_for_quiet(args.max_busy, args.max_wait)
            m = _measure_once(variant, project, raw, work)
            print(
                f"{n_cells:>7,} cells  {variant:<9}  repeat {repeat + 1}: {m.wall_s:7.2f} s  "
                f"{m.cpu_s:7.2f} CPU s  {m.peak_rss_mib:7.0f} MiB  {_phase_text(m.report)}",
                flush=True,
            )
            rows.append({"n_cells": n_cells, "variant": variant, "repeat": repeat + 1,
                         "wall_s": m.wall_s, "cpu_s": m.cpu_s, "peak_rss_mib": m.peak_rss_mib,
                         "busy_before": busy, **_flat_report(m.report)})  # fmt: skip
    return rows


def _phase_text(report: dict[str, Any]) -> str:
    phases = {k: v for k, v in report.get("phases", {}).items() if not k.startswith("peak")}
    return " ".join(f"{k}={v:.2f}" for k, v in phases.items())


def _flat_report(report: dict[str, Any]) -> dict[str, float]:
    flat = {}
    for section in ("phases", "nodes", "io"):
        for key, value in report.get(section, {}).items():
            if not key.startswith("peak"):
                flat[f"{section}.{key}"] = value
    return flat


def _summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    summary = []
    for n_cells in sorted({r["n_cells"] for r in rows}):
        at_size = [r for r in rows if r["n_cells"] == n_cells]
        plain = _medians(at_size, "plain")
        for variant in dict.fromkeys(r["variant"] for r in at_size):
            wall, rss, work = _medians(at_size, variant)
            cpu = median(r["cpu_s"] for r in at_size if r["variant"] == variant)
            plain_cpu = median(r["cpu_s"] for r in at_size if r["variant"] == "plain")
            summary.append({
                "cells": n_cells, "variant": variant, "runs": _count(at_size, variant),
                "wall s (median)": wall, "CPU s (median)": cpu,
                "wall s above plain": wall - plain[0], "CPU s above plain": cpu - plain_cpu,
                "pipeline s (median)": work,
                "peak RSS MiB (median)": rss,
                "time overhead vs plain %": 100 * (wall / plain[0] - 1) if plain[0] else "",
                "memory vs plain": rss / plain[1] if plain[1] else "",
            })  # fmt: skip
    return summary


def _medians(rows: list[dict[str, Any]], variant: str) -> tuple[float, float, float]:
    mine = [r for r in rows if r["variant"] == variant]
    if not mine:
        return float("nan"), float("nan"), float("nan")
    work_keys = ("phases.run",) if variant != "plain" else ()
    work = [_work_seconds(r, work_keys) for r in mine]
    return median(r["wall_s"] for r in mine), median(r["peak_rss_mib"] for r in mine), median(work)


def _work_seconds(row: dict[str, Any], keys: tuple[str, ...]) -> float:
    """Seconds of pipeline work: Kedro's session.run, or the plain script minus imports."""
    if keys:
        return row.get(keys[0], float("nan"))
    phases = [v for k, v in row.items() if k.startswith("phases.") and k != "phases.import"]
    return sum(phases) if phases else float("nan")


def _count(rows: list[dict[str, Any]], variant: str) -> int:
    return sum(1 for r in rows if r["variant"] == variant)


def _report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    summary = _summarise(rows)
    args.results.mkdir(parents=True, exist_ok=True)
    write_csv(args.results / "data_processing_runs.csv", _uniform(rows))
    write_csv(args.results / "data_processing.csv", summary)
    facts = machine_facts()
    table = markdown_table(summary)
    text = "\n".join(f"- {k}: {v}" for k, v in facts.items()) + "\n\n" + table + "\n"
    (args.results / "data_processing.md").write_text(text)
    print("\n" + text)


def _uniform(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return [{c: r.get(c, "") for c in columns} for r in rows]


def _profile(project: Path, raw: Path, work: Path) -> None:
    import pstats

    _point_raw_counts_at(project, raw)
    stats_path = work / "kedro.prof"
    result = work / "result.json"
    command = [*_worker_command("kedro"), "--project", str(project), "--result", str(result)]
    command += ["--profile-out", str(stats_path)]
    run_measured(command, result, work / "logs" / "profile.log", cwd=project)
    _drop_versioned_outputs(project)
    print(f"\ncProfile of one Kedro run on {raw.name} ({stats_path}):")
    pstats.Stats(str(stats_path)).sort_stats("cumulative").print_stats(40)
    _print_import_times(project, work)


# Modules whose import cost the Kedro run pays and the plain script does not (or does).
IMPORTS_OF_INTEREST = (
    "omics_vae.hooks", "omics_vae.pipelines.training.nodes", "lightning", "torch",
    "mlflow", "mlflow.store.tracking.sqlalchemy_store", "scanpy", "anndata",
    "kedro.framework.session",
)  # fmt: skip


def _print_import_times(project: Path, work: Path) -> None:
    """``python -X importtime`` of a Kedro run: cumulative seconds of a few modules."""
    import re

    result = work / "result.json"
    command = [sys.executable, "-X", "importtime", *_worker_command("kedro")[1:]]
    log = work / "logs" / "importtime.log"
    run_measured([*command, "--project", str(project), "--result", str(result)], result, log,
                 cwd=project)  # fmt: skip
    _drop_versioned_outputs(project)
    first: dict[str, float] = {}
    for line in log.read_text(errors="replace").splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|\s*(\S+)$", line)
        if match and match.group(2) in IMPORTS_OF_INTEREST:
            first.setdefault(match.group(2), int(match.group(1)) / 1e6)
    print("\nImport time (cumulative, where first imported) in a Kedro run:")
    for name in IMPORTS_OF_INTEREST:
        print(f"  {name:<40} {first.get(name, float('nan')):6.2f} s")


if __name__ == "__main__":
    main()
