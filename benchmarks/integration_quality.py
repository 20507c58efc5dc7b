"""Benchmark: integration quality of this project's models against scvi-tools and PCA.

One command trains every model on the SAME processed cells and scores all embeddings in
ONE scib-metrics table (unscaled, the metrics and settings of
``conf/base/parameters_evaluation.yml``), computed with the project's own evaluation
nodes (``prepare_evaluation_cells`` + ``benchmark_integration``):

- ``invae``: this project's inVAE, its batch-corrected latent ``z_i``, default
  parameters (``conf/base/parameters_training.yml``: learned cell-type prior means,
  ``max_epochs: auto``, early stopping on ``val/loss``). It is given the cell-type labels
  as covariates, so its bio-conservation scores are supervised.
- ``invae_unsupervised``: the same with ``training.covariates.bio=[]`` (no labels).
- ``scvi_vae``: this project's scVI-style baseline (``training.model=scvi_vae``).
- ``scvi-tools SCVI``: ``scvi.model.SCVI(n_hidden=128, n_layers=2, n_latent=30,
  gene_likelihood="nb")`` with ``batch_key`` the processed data's batch key, trained on
  the raw-counts layer of the same processed cells, on the same train / validation
  cells, for the same number of epochs as the ``auto`` rule gives (scvi-tools' own
  default: no early stopping), in the interpreter of ``--scvi-python`` (a subprocess that
  writes its latent to an ``.npy``).
- ``pca``: the project's unintegrated PCA baseline (log-normalised HVGs, 30 components).

How: a throw-away copy of the project (``conf``, ``src``, ``pyproject.toml``; empty
``data/``) under ``--work`` with ``conf/local`` overrides pointing ``raw_counts`` at the
data file and setting the processing parameters of ``--data`` (for pbmc_3chem: batch key
``chemistry``, QC thresholds 50 genes / 200 counts; the rest default). Then
``kedro run`` (every pipeline, inVAE, first seed: data processing, and the project's own
evaluation as a cross-check of the combined table), one ``kedro run --pipelines
training,embedding`` per further model and seed on that ``model_input`` version, the
scvi-tools workers, and the combined benchmark. Every trainer uses ``--threads`` CPU
threads (1 by default: on a shared two-core machine two torch threads that compete with
other processes' work spin and run many times slower).

Usage (from the repository root)::

    .venv/bin/python benchmarks/integration_quality.py
    .venv/bin/python benchmarks/integration_quality.py --seeds 0 --unsupervised-seeds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS,
    copy_project,
    machine_facts,
    markdown_table,
    run_measured,
    wait_for_quiet,
    write_csv,
)

SHARED_PBMC = Path("/work/shared/data/pbmc_3chem.h5ad")
SCVI_PYTHONS = ("/tmp/bench-scvi/bin/python", "/tmp/scvi-venv/bin/python")
# Processing overrides per data file: pbmc_3chem is a 1,767-gene panel, on which the
# default QC thresholds (200 genes / 500 counts) remove half of the cells.
PROCESSING = {
    SHARED_PBMC.name: {
        "batch_key": "chemistry",
        "cell_type_key": "cell_type",
        "qc": {"min_genes_per_cell": 50, "min_counts_per_cell": 200},
    }
}
SCVI_ARCHITECTURE = {"n_hidden": 128, "n_layers": 2, "n_latent": 30, "gene_likelihood": "nb"}
BATCH_SIZE = 128  # scvi-tools' default and the project's training.trainer.batch_size
SCORES = ("Batch correction", "Bio conservation", "Total")
LABELS = {
    "invae": "omics_vae invae z_i (cell-type labels as covariates)",
    "invae_unsupervised": "omics_vae invae z_i, unsupervised (covariates.bio=[])",
    "scvi_vae": "omics_vae scvi_vae",
    "scvi_tools": "scvi-tools SCVI",
    "pca": "PCA (unintegrated)",
}


@dataclass
class Run:
    """One trained model: where its latent lies and what its training cost."""

    model: str  # a key of LABELS
    seed: int
    supervised: bool
    embeddings: Path | None = None  # the embedding pipeline's h5ad (this project's models)
    latent: Path | None = None  # an .npy in model_input's cell order (scvi-tools)
    epochs: int | None = None
    train_wall_s: float = float("nan")
    process_wall_s: float = float("nan")
    busy_before: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model}_s{self.seed}"


# ---- scvi-tools worker (runs in the scvi-tools interpreter: stdlib + scvi only) ----------


def scvi_worker(args: argparse.Namespace) -> None:
    """Trains scvi-tools' SCVI on the raw counts of the processed cells; saves its latent."""
    import anndata as ad
    import numpy as np
    import scvi
    import torch

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    processed = ad.read_h5ad(args.data)
    split = processed.obs["split"].astype(str).to_numpy()
    adata = ad.AnnData(
        X=processed.layers["counts"],
        obs=processed.obs[[args.batch_key]].copy(),
        var=processed.var[[]].copy(),
    )
    scvi.model.SCVI.setup_anndata(adata, batch_key=args.batch_key)
    model = scvi.model.SCVI(adata, **SCVI_ARCHITECTURE)
    indices = [np.flatnonzero(split == name) for name in ("train", "val", "test")]
    setup_s = time.perf_counter() - started
    started = time.perf_counter()
    model.train(
        max_epochs=args.max_epochs, batch_size=BATCH_SIZE, early_stopping=False,
        accelerator="cpu", devices=1, enable_progress_bar=False,
        datasplitter_kwargs={"external_indexing": indices},
    )  # fmt: skip
    train_s = time.perf_counter() - started
    latent = model.get_latent_representation(adata)  # posterior means, every cell
    np.save(args.out, latent.astype(np.float32))
    report = {
        "train_wall_s": train_s,
        "setup_s": setup_s,
        "epochs": len(model.history["elbo_train"]),
        "n_train": len(indices[0]),
        "n_val": len(indices[1]),
        "threads": torch.get_num_threads(),
        "scvi-tools": scvi.__version__,
        "torch": torch.__version__,
    }
    Path(args.result).write_text(json.dumps(report, indent=2))


# ---- the project copy and its kedro runs ------------------------------------------------


def copy_project_for(target: Path, data: Path, threads: int) -> Path:
    """A throw-away copy of the project with conf/local overrides for ``data``."""
    import yaml

    local = copy_project(target) / "conf" / "local"
    catalog = {"raw_counts": {"type": "omics_vae.datasets.H5ADDataset", "filepath": str(data)}}
    (local / "catalog.yml").write_text(yaml.safe_dump(catalog))
    processing = PROCESSING.get(data.name, {})
    (local / "parameters_data_processing.yml").write_text(
        yaml.safe_dump({"data_processing": processing})
    )
    training = {"trainer": {"num_threads": threads, "enable_progress_bar": False}}
    (local / "parameters_training.yml").write_text(yaml.safe_dump({"training": training}))
    return target


def versions(project: Path, entry: str) -> set[str]:
    """The saved versions of a versioned catalog entry (``layer/file``) in the copy."""
    folder = project / "data" / entry
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def kedro_run(
    project: Path, work: Path, label: str, arguments: list[str], args: argparse.Namespace
) -> tuple[str, float, float]:
    """``kedro run <arguments>`` in the copy; returns the run's save version, its wall
    time and the busy fraction of the cores just before it."""
    before = versions(project, "07_model_output/embeddings.h5ad")
    busy = wait_for_quiet(args.max_busy, args.max_wait)
    kedro = Path(sys.executable).parent / "kedro"
    command = [str(kedro), "run", *arguments]
    print(f"[{_clock()}] {label}: {' '.join(command[1:])}", flush=True)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    measurement = run_measured(
        command, work / "unused.json", work / "logs" / f"{label}.log", cwd=project, env=env
    )
    (new,) = versions(project, "07_model_output/embeddings.h5ad") - before
    return new, measurement.wall_s, busy


def train_ours(
    project: Path, work: Path, run: Run, data_version: str | None, args: argparse.Namespace
) -> str:
    """Trains and embeds one of this project's models with ``kedro run``; fills ``run``.

    Without ``data_version`` the run is a plain ``kedro run`` (every pipeline: data
    processing first, the project's own evaluation last)."""
    import yaml

    params = [f"training.seed={run.seed}", f"training.trainer.max_epochs={args.epochs}"]
    if run.model == "scvi_vae":
        params.append("training.model=scvi_vae")
    if run.model == "invae_unsupervised":
        params.append("training.covariates.bio=[]")
    arguments = ["--params", ",".join(params)]
    if data_version is not None:
        arguments = ["--pipelines", "training,embedding", "--load-versions",
                     f"model_input:{data_version}", *arguments]  # fmt: skip
    version, run.process_wall_s, run.busy_before = kedro_run(
        project, work, run.name, arguments, args
    )
    run.embeddings = _versioned_file(project, "07_model_output/embeddings.h5ad", version)
    card = yaml.safe_load(_versioned_file(project, "06_models/model_card.yml", version).read_text())
    run.epochs = int(card["training"]["epochs"])
    run.train_wall_s = float(card["training"]["wall_time_s"])
    run.extra["covariates"] = card["covariates"]
    return version


def train_scvi_tools(
    run: Run, model_input: Path, batch_key: str, max_epochs: int, args: argparse.Namespace
) -> None:
    """scvi-tools' SCVI in its own interpreter, on the processed cells' raw counts."""
    work = args.work
    run.latent = work / f"{run.name}.npy"
    result = work / f"{run.name}.json"
    command = [args.scvi_python, str(Path(__file__).resolve()), "--worker", "scvi",
               "--data", str(model_input), "--batch-key", batch_key, "--seed", str(run.seed),
               "--max-epochs", str(max_epochs), "--threads", str(args.threads),
               "--out", str(run.latent), "--result", str(result)]  # fmt: skip
    run.busy_before = wait_for_quiet(args.max_busy, args.max_wait)
    print(f"[{_clock()}] {run.name}: scvi-tools SCVI, {max_epochs} epochs", flush=True)
    env = {**os.environ, **{v: str(args.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}}
    measurement = run_measured(command, result, work / "logs" / f"{run.name}.log", env=env)
    run.process_wall_s = measurement.wall_s
    run.train_wall_s = measurement.report["train_wall_s"]
    run.epochs = measurement.report["epochs"]
    run.extra.update(measurement.report)


def _versioned_file(project: Path, entry: str, version: str) -> Path:
    return project / "data" / entry / version / Path(entry).name


def _clock() -> str:
    return time.strftime("%H:%M:%S")


# ---- the combined benchmark -------------------------------------------------------------


def evaluate(project: Path, model_input_path: Path, runs: list[Run], work: Path) -> Any:
    """One scib-metrics table of every run's latent and the PCA baseline, on the same
    cells, through the project's evaluation nodes and its evaluation parameters."""
    import anndata as ad
    import numpy as np
    import yaml

    from omics_vae.evaluation.cells import PCA_KEY, RECORD_KEY
    from omics_vae.pipelines.evaluation.nodes import (
        benchmark_integration,
        prepare_evaluation_cells,
    )

    base = project / "conf" / "base" / "parameters_evaluation.yml"
    params = yaml.safe_load(base.read_text())["evaluation"]
    model_input = ad.read_h5ad(model_input_path)
    first = ad.read_h5ad(runs[0].embeddings)
    cells = prepare_evaluation_cells(first, model_input, params)
    keys = {}
    for run in runs:
        if run.embeddings is not None:
            embedded = ad.read_h5ad(run.embeddings)
            latent = np.asarray(embedded.obsm[embedded.uns["embedding"]["latent_key"]])
            rows = embedded.obs_names.get_indexer(cells.obs_names)
        else:
            latent = np.load(run.latent)
            rows = model_input.obs_names.get_indexer(cells.obs_names)
        if (rows < 0).any():
            raise RuntimeError(f"{run.name}: its cells differ from the evaluated cells")
        cells.obsm[f"X_{run.name}"] = latent[rows].astype(np.float32)
        keys[run.name] = f"X_{run.name}"
    keys["pca"] = PCA_KEY
    cells.uns[RECORD_KEY]["embeddings"] = keys
    cells.uns[RECORD_KEY]["model"] = runs[0].name
    print(f"[{_clock()}] scib-metrics on {cells.n_obs} cells, {len(keys)} embeddings", flush=True)
    started = time.perf_counter()
    table, figure = benchmark_integration(cells, params)
    figure.savefig(work / "integration_quality.png", dpi=110, bbox_inches="tight")
    return table, time.perf_counter() - started, params


def project_evaluation(project: Path, version: str) -> Any:
    """The scib table of the first ``kedro run``'s own evaluation pipeline."""
    import pandas as pd

    return pd.read_csv(_versioned_file(project, "08_reporting/scib_results.csv", version))


# ---- tables -----------------------------------------------------------------------------


def result_rows(table: Any, runs: list[Run]) -> list[dict[str, Any]]:
    by_name = {run.name: run for run in runs}
    metric_columns = [c for c in table.columns if c not in ("embedding", "role", "supervised",
                                                            "n_cells", "note")]  # fmt: skip
    rows = []
    for record in table.to_dict("records"):
        run = by_name.get(record["embedding"])
        row = {
            "embedding": run.model if run else record["embedding"],
            "label": LABELS[run.model if run else record["embedding"]],
            "seed": run.seed if run else "",
            "supervised": run.supervised if run else False,
            "n_cells": record["n_cells"],
            "epochs": run.epochs if run else "",
            "train_wall_s": round(run.train_wall_s, 2) if run else "",
            "process_wall_s": round(run.process_wall_s, 2) if run else "",
            "busy_before": round(run.busy_before, 3) if run else "",
        }
        row.update({c: record[c] for c in metric_columns})
        rows.append(row)
    return rows


def summary_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± sample sd over seeds per embedding."""
    summary = []
    for model, label in LABELS.items():
        group = [row for row in rows if row["embedding"] == model]
        if not group:
            continue
        seeds = [str(row["seed"]) for row in group if row["seed"] != ""]
        epochs = [row["epochs"] for row in group if row["epochs"] != ""]
        walls = [row["train_wall_s"] for row in group if row["train_wall_s"] != ""]
        summary.append(
            {
                "embedding": label,
                "seeds": ",".join(seeds) or "- (deterministic)",
                "epochs": _span(epochs),
                **{score: _mean_sd([row[score] for row in group]) for score in SCORES},
                "training s": _mean_sd(walls, digits=0) if walls else "-",
            }
        )
    return summary


def _mean_sd(values: list[float], digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _span(values: list[int]) -> str:
    if not values:
        return "-"
    return str(values[0]) if min(values) == max(values) else f"{min(values)}-{max(values)}"


def write_report(
    rows: list[dict[str, Any]], facts: dict[str, str], notes: list[str], command: str,
) -> None:  # fmt: skip
    write_csv(RESULTS / "integration_quality.csv", rows)
    per_seed = [
        {key: row[key] for key in ("label", "seed", "epochs", *SCORES, "train_wall_s")}
        for row in rows
    ]
    text = [
        "# Integration quality on pbmc_3chem",
        "",
        f"Command: `{command}`",
        "",
        *[f"- {key}: {value}" for key, value in facts.items()],
        "",
        "Mean ± sample sd over seeds (scib-metrics, unscaled):",
        "",
        markdown_table(summary_rows(rows)),
        "",
        "Per seed:",
        "",
        markdown_table(per_seed),
        "",
        *[f"- {note}" for note in notes],
        "",
    ]
    (RESULTS / "integration_quality.md").write_text("\n".join(text))


# ---- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.worker == "scvi":
        scvi_worker(args)
        return
    started = time.perf_counter()
    args.scvi_python = args.scvi_python or next((p for p in SCVI_PYTHONS if Path(p).exists()), None)
    if args.scvi_python is None:
        raise SystemExit(f"No scvi-tools interpreter: pass --scvi-python (tried {SCVI_PYTHONS})")
    work = args.work
    project = copy_project_for(work / "project", args.data, args.threads)
    from omics_vae.training.fitting import default_max_epochs

    seeds, unsupervised = list(args.seeds), list(args.unsupervised_seeds)
    runs: list[Run] = []
    first = Run("invae", seeds[0], supervised=True)
    first_version = train_ours(project, work, first, None, args)
    runs.append(first)
    (data_version,) = versions(project, "05_model_input/model_input.h5ad")
    model_input = _versioned_file(project, "05_model_input/model_input.h5ad", data_version)
    record = _processing_record(model_input)
    max_epochs = (
        default_max_epochs(record["n_cells_per_split"]["train"])
        if args.epochs == "auto"
        else int(args.epochs)
    )
    for seed in seeds:
        if seed != first.seed:
            runs.append(Run("invae", seed, supervised=True))
            train_ours(project, work, runs[-1], data_version, args)
        runs.append(Run("scvi_vae", seed, supervised=False))
        train_ours(project, work, runs[-1], data_version, args)
        runs.append(Run("scvi_tools", seed, supervised=False))
        train_scvi_tools(runs[-1], model_input, record["params"]["batch_key"], max_epochs, args)
    for seed in unsupervised:
        runs.append(Run("invae_unsupervised", seed, supervised=False))
        train_ours(project, work, runs[-1], data_version, args)
    runs.sort(key=lambda run: (list(LABELS).index(run.model), run.seed))
    table, benchmark_s, params = evaluate(project, model_input, runs, work)
    rows = result_rows(table, runs)
    own = project_evaluation(project, first_version).set_index("embedding")
    combined = table.set_index("embedding")
    check = {
        f"{name} (as {key})": abs(float(own.loc[name, "Total"] - combined.loc[key, "Total"]))
        for name, key in (("invae", first.name), ("pca", "pca"))
    }
    total_s = time.perf_counter() - started
    scvi_run = next(run for run in runs if run.model == "scvi_tools")
    facts = {
        **machine_facts(),
        "scib-metrics": _version("scib_metrics"),
        "jax": _version("jax"),
        "scvi-tools env": f"scvi-tools {scvi_run.extra['scvi-tools']}, "
        f"torch {scvi_run.extra['torch']} ({args.scvi_python})",
        "torch threads per trainer": str(args.threads),
        "data": f"{args.data} -> {record['n_cells_after_qc']} cells x "
        f"{record['n_highly_variable_genes']} HVGs, split {record['n_cells_per_split']}",
        "benchmark wall time": f"{total_s / 60:.1f} min (combined scib table {benchmark_s:.0f} s)",
    }
    notes = _notes(runs, max_epochs, params, check)
    command = " ".join(["python", "benchmarks/integration_quality.py", *(argv or sys.argv[1:])])
    write_report(rows, facts, notes, command)
    print(markdown_table(summary_rows(rows)))
    print("\n".join(notes))
    print(f"total {total_s:.0f} s; work folder {work}")
    if not args.keep:
        shutil.rmtree(work / "project" / "data", ignore_errors=True)


def _processing_record(model_input: Path) -> dict[str, Any]:
    import anndata as ad

    return dict(ad.read_h5ad(model_input, backed="r").uns["data_processing"])


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package.replace("_", "-"))


def _notes(
    runs: list[Run], max_epochs: int, params: dict[str, Any], check: dict[str, float]
) -> list[str]:
    metrics = params["metrics"]
    return [
        "Scores are scib-metrics' raw values (get_results(min_max_scale=False)) of the "
        "project's evaluation nodes with conf/base/parameters_evaluation.yml: bio "
        f"{metrics['bio']}, batch {metrics['batch']}, {params['neighbors']} neighbours, "
        "every cell (the data is below max_cells). Total = 0.4 batch + 0.6 bio.",
        "All embeddings come from one processed model_input version (the same cells); PCA is "
        "the project's unintegrated baseline (30 components of the log-normalised HVGs).",
        "invae is given the cell-type labels as covariates (its z_i prior is conditioned on "
        "them): its bio-conservation scores, and so its Total, are supervised and not "
        "comparable at face value with the unsupervised rows. invae_unsupervised is the same "
        "model with training.covariates.bio=[].",
        f"Epochs: the auto rule gives {max_epochs}; this project's models stop early "
        "(patience 20 on val/loss, best epoch's weights kept), scvi-tools SCVI runs all "
        f"{max_epochs} (its default, early_stopping=False) on the same train/val cells.",
        "training s: the fit's wall time (model card for this project's models, the "
        "model.train() call for scvi-tools), one torch thread, on a shared machine.",
        "Cross-check against the project's own `kedro run` evaluation of the first inVAE "
        "run: |Total difference| "
        + ", ".join(f"{name} {diff:.1e}" for name, diff in check.items())
        + ".",
    ]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED_PBMC, help="raw-count .h5ad")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds of invae, scvi_vae and scvi-tools SCVI")  # fmt: skip
    parser.add_argument("--unsupervised-seeds", type=int, nargs="*", default=[0],
                        help="seeds of the unsupervised inVAE row (none: skip it)")  # fmt: skip
    parser.add_argument("--scvi-python", help=f"interpreter with scvi-tools ({SCVI_PYTHONS})")
    parser.add_argument("--epochs", default="auto",
                        help="max epochs of every model; auto = the project's rule")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trainer")
    parser.add_argument("--work", type=Path, default=Path("/tmp/omics-vae-integration-quality"))
    parser.add_argument("--keep", action="store_true", help="keep the copy's data/ afterwards")
    parser.add_argument("--max-busy", type=float, default=0.5,
                        help="wait until the cores are less busy than this")  # fmt: skip
    parser.add_argument("--max-wait", type=float, default=5.0, help="seconds to wait at most")
    worker = parser.add_argument_group("worker (internal)")
    worker.add_argument("--worker", choices=["scvi"], help=argparse.SUPPRESS)
    worker.add_argument("--batch-key", help=argparse.SUPPRESS)
    worker.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--max-epochs", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--out", help=argparse.SUPPRESS)
    worker.add_argument("--result", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
