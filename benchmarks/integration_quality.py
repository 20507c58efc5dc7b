"""Benchmark: integration quality and label transfer of this project's models against
scvi-tools, Harmony and PCA, on pbmc_3chem and on simulated data (issue 13).

For each dataset of ``--data`` (``pbmc_3chem``, ``simulated``; both by default), one
command trains every method of ``--methods`` with every seed of ``--seeds`` on the SAME
processed cells and scores all embeddings in one scib-metrics table (unscaled, the
metrics and settings of ``conf/base/parameters_evaluation.yml``), computed with the
project's own evaluation code (``prepare_evaluation_cells`` + ``benchmark_integration``):
first on the test split only (``obs["split"] == "test"``, the headline table), then on
every cell (a secondary table; ``--no-all-cells`` skips it).

Datasets:

- ``pbmc_3chem``: ``--pbmc`` (``<repo>/../shared/data/pbmc_3chem.h5ad``), batch key
  ``chemistry`` (three 10x chemistries), QC thresholds 50 genes / 200 counts (a 1,767-gene
  panel; the defaults would remove half of the cells).
- ``simulated``: ``omics_vae.data.simulate.simulate_counts`` with ``--sim-cells``,
  ``--sim-genes``, ``--sim-batches``, ``--sim-cell-types``, ``--sim-seed`` and
  ``--sim-batch-effect-sd`` (the SD of the per-batch, per-gene log fold change), processed
  with the project's default parameters.

The technology (batch) effect of each dataset is measured the same way
(:func:`technology_effect`) and reported beside pbmc_3chem's, so the report states whether
the simulated effect is at least as strong. Label hiding: in the raw data, ``--hide-fraction``
(50 %) of the cells of the largest batch, drawn with ``--hide-seed``, get the label
``unknown`` in the new obs column ``cell_type_hidden``; ``cell_type`` keeps the true labels
(the processing's cell-type key, used by the bio-conservation metrics). That copy is the
raw data of the one data-processing run every method uses.

Methods (``--methods``; every one by default):

- ``invae``: this project's inVAE, batch-corrected latent ``z_i``, default parameters
  (``covariates.bio: auto`` = the true cell types): supervised.
- ``invae_semisupervised``: the same with ``training.covariates.bio=[cell_type_hidden]``
  and ``training.covariates.unlabelled_category=unknown``: the hidden cells train as
  unlabelled cells; its ``obs["predicted_cell_type_hidden"]`` gives the label transfer.
- ``invae_unsupervised``: the same with ``training.covariates.bio=[]``.
- ``scvi_vae``: this project's scVI-style baseline (``training.model=scvi_vae``).
- ``scvi_tools``: ``scvi.model.SCVI(n_hidden=128, n_layers=2, n_latent=30,
  gene_likelihood="nb")`` on the raw counts of the processed cells, the same train / val
  cells, as many epochs as the project's ``auto`` rule (no early stopping, scvi-tools'
  default), in the interpreter of ``--scvi-python`` (a worker subprocess of this script).
- ``scanvi``: ``scvi.model.SCANVI.from_scvi_model`` of that seed's SCVI with
  ``labels_key="cell_type_hidden"``, ``unlabeled_category="unknown"``, trained with
  scvi-tools' defaults (a pre-trained SCANVI runs min(10, max(2, round(auto / 3)))
  epochs) on the same train / val cells; ``model.predict`` gives the label transfer.
- ``harmony``, ``pca``: the project's evaluation baselines (Harmony on the unintegrated
  PCA; 30 components of the log-normalised HVGs), computed on the evaluated cells;
  deterministic, so one row each.

Label transfer: accuracy and macro-F1 (scikit-learn, over the true labels present) of the
predicted labels against ``cell_type``, on the hidden cells (semi-supervised inVAE and
scANVI) and on the test split (every method that predicts labels).

How: per dataset, a folder ``--work/<dataset>`` with the raw copy, a throw-away copy of the
project (``conf``, ``src``, ``pyproject.toml``; empty ``data/``) whose ``conf/local`` points
``raw_counts`` at it and sets the processing parameters, one ``kedro run --pipelines
data_processing``, one ``kedro run --pipelines training,embedding --load-versions
model_input:<version>`` per project model and seed, one scvi-tools worker per seed (SCVI,
then SCANVI from it), then the combined tables. Every trainer uses ``--threads`` CPU
threads (1 by default: on a shared two-core machine, competing torch threads run many
times slower). Results: ``benchmarks/results/integration_quality_<dataset>.{csv,md}``.

Usage (from the repository root, the project's virtual environment active)::

    python benchmarks/integration_quality.py                     # everything, 3 seeds
    python benchmarks/integration_quality.py --data pbmc_3chem --seeds 0 \\
        --methods invae scvi_tools scanvi pca --epochs 5         # a quick plumbing check
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
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
    with_threads,
    write_csv,
)

# The shared data folder lies beside the repository: <repo>/../shared/data.
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SHARED_PBMC = SHARED_DATA / "pbmc_3chem.h5ad"
SCVI_PYTHONS = ("/tmp/bench-scvi/bin/python", "/tmp/scvi-venv/bin/python")
DATASETS = ("pbmc_3chem", "simulated")
# Processing overrides per dataset (conf/local/parameters_data_processing.yml). pbmc_3chem
# is a 1,767-gene panel, on which the default QC thresholds (200 genes / 500 counts)
# remove half of the cells; the simulation uses the defaults (batch, cell_type).
PROCESSING = {
    "pbmc_3chem": {
        "batch_key": "chemistry",
        "cell_type_key": "cell_type",
        "qc": {"min_genes_per_cell": 50, "min_counts_per_cell": 200},
    },
    "simulated": {"batch_key": "batch", "cell_type_key": "cell_type"},
}
UNLABELLED = "unknown"  # the label of the hidden cells
HIDDEN_SUFFIX = "_hidden"  # obs column of the labels with some hidden: <cell type key>_hidden
SCVI_ARCHITECTURE = {"n_hidden": 128, "n_layers": 2, "n_latent": 30, "gene_likelihood": "nb"}
BATCH_SIZE = 128  # scvi-tools' default and the project's training.trainer.batch_size
SCORES = ("Batch correction", "Bio conservation", "Total")
TRANSFER = ("hidden_accuracy", "hidden_macro_f1", "test_accuracy", "test_macro_f1")
SCOPES = {"test": ["test"], "all": None}  # evaluated cells: obs["split"] values (None: all)
LABELS = {
    "invae": "omics_vae inVAE z_i, supervised (true cell types as covariates)",
    "invae_semisupervised": "omics_vae inVAE z_i, semi-supervised (hidden labels)",
    "invae_unsupervised": "omics_vae inVAE z_i, unsupervised (covariates.bio=[])",
    "scvi_vae": "omics_vae scvi_vae",
    "scvi_tools": "scvi-tools SCVI",
    "scanvi": "scvi-tools SCANVI (from SCVI, hidden labels)",
    "harmony": "Harmony (on the PCA)",
    "pca": "PCA (unintegrated)",
}
OURS = ("invae", "invae_semisupervised", "invae_unsupervised", "scvi_vae")
SCVI_TOOLS = ("scvi_tools", "scanvi")
BASELINES = ("harmony", "pca")
# Methods trained with some labels hidden: their hidden-cell scores are label transfer.
SEMI_SUPERVISED = ("invae_semisupervised", "scanvi")


@dataclass
class Dataset:
    """One benchmarked dataset: its raw copy (with the hidden-label column) and facts."""

    name: str
    raw: Path
    batch_key: str
    label_key: str
    processing: dict[str, Any]
    effect: dict[str, float]
    hidden: dict[str, Any]
    description: str

    @property
    def hidden_key(self) -> str:
        return self.label_key + HIDDEN_SUFFIX


@dataclass
class Bench:
    """One dataset's benchmark: its data, the project copy, the work folder, the options,
    and, once processed, the processed cells every method uses."""

    dataset: Dataset
    project: Path
    work: Path
    args: argparse.Namespace
    model_input: Path = Path()
    data_version: str = ""
    max_epochs: int = 0


@dataclass
class Run:
    """One trained model: where its latent and predicted labels lie, what training cost."""

    model: str  # a key of LABELS
    seed: int
    embeddings: Path | None = None  # the embedding pipeline's h5ad (this project's models)
    latent: Path | None = None  # an .npy in model_input's cell order (scvi-tools)
    predictions: Path | None = None  # an .npy of labels in model_input's order (scANVI)
    epochs: int | None = None
    train_wall_s: float = float("nan")
    process_wall_s: float = float("nan")
    busy_before: float = float("nan")
    transfer: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.model}_s{self.seed}"


# ---- scvi-tools worker (runs in the scvi-tools interpreter: stdlib + scvi only) ----------


def scvi_worker(args: argparse.Namespace) -> None:
    """Trains scvi-tools' SCVI on the raw counts of the processed cells, then, with
    ``--labels-key``, SCANVI from it; saves latents (and SCANVI's labels) as ``.npy``."""
    import anndata as ad
    import numpy as np
    import scvi
    import torch

    torch.set_num_threads(args.threads)
    scvi.settings.seed = args.seed
    processed = ad.read_h5ad(args.input)
    split = processed.obs["split"].astype(str).to_numpy()
    columns = [args.batch_key] + ([args.labels_key] if args.labels_key else [])
    adata = ad.AnnData(
        X=processed.layers["counts"], obs=processed.obs[columns].copy(), var=processed.var[[]]
    )
    indices = [np.flatnonzero(split == name) for name in ("train", "val", "test")]
    trainer = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
               "datasplitter_kwargs": {"external_indexing": indices}}  # fmt: skip
    scvi.model.SCVI.setup_anndata(adata, batch_key=args.batch_key)
    model = scvi.model.SCVI(adata, **SCVI_ARCHITECTURE)
    started = time.perf_counter()
    model.train(max_epochs=args.max_epochs, batch_size=BATCH_SIZE, early_stopping=False, **trainer)
    report = {
        "scvi": {"train_wall_s": time.perf_counter() - started, "epochs": _epochs(model)},
        "n_train": len(indices[0]),
        "n_val": len(indices[1]),
        "threads": torch.get_num_threads(),
        "scvi-tools": scvi.__version__,
        "torch": torch.__version__,
    }
    np.save(f"{args.out}_scvi.npy", model.get_latent_representation(adata).astype(np.float32))
    if args.labels_key:
        scanvi = scvi.model.SCANVI.from_scvi_model(
            model, unlabeled_category=args.unlabelled, labels_key=args.labels_key
        )
        started = time.perf_counter()
        scanvi.train(max_epochs=args.scanvi_epochs, **trainer)  # None: scvi-tools' default
        report["scanvi"] = {
            "train_wall_s": time.perf_counter() - started,
            "epochs": _epochs(scanvi),
        }
        latent = scanvi.get_latent_representation(adata).astype(np.float32)
        np.save(f"{args.out}_scanvi.npy", latent)
        np.save(f"{args.out}_scanvi_labels.npy", np.asarray(scanvi.predict(adata), dtype=str))
        soft = scanvi.predict(adata, soft=True)
        np.save(f"{args.out}_scanvi_probability.npy", soft.to_numpy().max(axis=1))
    Path(args.result).write_text(json.dumps(report, indent=2))


def _epochs(model: Any) -> int:
    """Epochs a scvi-tools model trained: the length of its per-epoch training loss."""
    history = model.history
    key = "train_loss_epoch" if "train_loss_epoch" in history else "elbo_train"
    return len(history[key])


# ---- the datasets ------------------------------------------------------------------------


def technology_effect(
    adata: Any,
    batch_key: str,
    label_key: str,
    *,
    min_cells: int = 20,
    min_detected: float = 0.1,
    min_counts: int = 200,
    seed: int = 0,
) -> dict[str, float]:
    """Strength of the technology (batch) effect within cell types, the same for any data.

    On log1p of counts per 10,000 (cells with at least ``min_counts`` counts), for each
    cell type and each pair of batches with at least ``min_cells`` cells of it: the SD
    across genes (detected in at least ``min_detected`` of those cells) of the difference
    of the two batches' mean expression, i.e. the spread of the per-gene log fold changes.
    The same with the cells' batch labels shuffled within the pair gives the sampling-noise
    floor, which depends on the group sizes; the effect is ``sqrt(raw² - noise²)``, so data
    sets of different sizes compare.

    Returns:
        ``effect`` (noise-corrected), ``raw``, ``noise`` (means over the type x batch-pair
        comparisons) and ``comparisons`` (their number).
    """
    import numpy as np
    import scipy.sparse as sp

    counts = sp.csr_matrix(adata.X, dtype=np.float64)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    keep = totals >= min_counts
    expression = (sp.diags(1e4 / totals[keep]) @ counts[keep]).tocsr()
    expression.data = np.log1p(expression.data)
    batch = adata.obs[batch_key].astype(str).to_numpy()[keep]
    label = adata.obs[label_key].astype(str).to_numpy()[keep]
    rng = np.random.default_rng(seed)

    def spread(first: np.ndarray, second: np.ndarray, genes: np.ndarray) -> float:
        means = [np.asarray(expression[rows].mean(axis=0)).ravel() for rows in (first, second)]
        return float(np.std((means[0] - means[1])[genes], ddof=1))

    raw, noise = [], []
    for cell_type in np.unique(label):
        groups = {
            b: np.flatnonzero((label == cell_type) & (batch == b))
            for b in np.unique(batch[label == cell_type])
        }
        groups = {b: rows for b, rows in groups.items() if len(rows) >= min_cells}
        for first, second in itertools.combinations(sorted(groups), 2):
            rows = np.concatenate([groups[first], groups[second]])
            genes = np.asarray((expression[rows] > 0).mean(axis=0)).ravel() >= min_detected
            raw.append(spread(groups[first], groups[second], genes))
            shuffled = rng.permutation(rows)
            size = len(groups[first])
            noise.append(spread(shuffled[:size], shuffled[size:], genes))
    if not raw:
        nan = float("nan")
        return {"effect": nan, "raw": nan, "noise": nan, "comparisons": 0}
    mean_raw, mean_noise = float(np.mean(raw)), float(np.mean(noise))
    effect = float(np.sqrt(max(mean_raw**2 - mean_noise**2, 0.0)))
    return {"effect": effect, "raw": mean_raw, "noise": mean_noise, "comparisons": len(raw)}


def hide_labels(
    adata: Any, batch_key: str, label_key: str, fraction: float, seed: int
) -> dict[str, Any]:
    """Adds ``obs[<label_key>_hidden]``: the labels, with ``fraction`` of the cells of the
    largest batch (drawn with ``seed``) set to ``unknown``. Returns what was hidden."""
    import numpy as np
    import pandas as pd

    batch = adata.obs[batch_key].astype(str)
    largest = batch.value_counts().sort_index().idxmax()  # ties: the first name
    in_batch = np.flatnonzero(batch.to_numpy() == largest)
    chosen = np.random.default_rng(seed).choice(
        in_batch, size=round(fraction * len(in_batch)), replace=False
    )
    labels = adata.obs[label_key].astype(str).to_numpy().copy()
    labels[chosen] = UNLABELLED
    categories = [*sorted(set(adata.obs[label_key].astype(str))), UNLABELLED]
    adata.obs[label_key + HIDDEN_SUFFIX] = pd.Categorical(labels, categories=categories)
    return {"batch": largest, "batch_cells": len(in_batch), "hidden_raw": len(chosen)}


def prepare_dataset(name: str, work: Path, args: argparse.Namespace) -> Dataset:
    """Loads or simulates the raw counts, measures their technology effect, hides labels
    and writes the copy every method's processing reads (``<work>/raw_counts.h5ad``)."""
    import anndata as ad

    processing = dict(PROCESSING[name])
    if args.test_fraction is not None:
        train = round(0.9 - args.test_fraction, 6)
        processing["split"] = {"train": train, "val": 0.1, "test": args.test_fraction}
    if name == "pbmc_3chem":
        adata = ad.read_h5ad(args.pbmc)
        description = str(args.pbmc)
    else:
        from omics_vae.data.simulate import simulate_counts

        settings = {
            "n_cells": args.sim_cells,
            "n_genes": args.sim_genes,
            "n_batches": args.sim_batches,
            "n_cell_types": args.sim_cell_types,
            "seed": args.sim_seed,
            "batch_effect_sd": args.sim_batch_effect_sd,
        }
        adata = simulate_counts(**settings)
        description = "simulate_counts(" + ", ".join(f"{k}={v}" for k, v in settings.items()) + ")"
    batch_key, label_key = processing["batch_key"], processing["cell_type_key"]
    effect = technology_effect(adata, batch_key, label_key)
    hidden = hide_labels(adata, batch_key, label_key, args.hide_fraction, args.hide_seed)
    work.mkdir(parents=True, exist_ok=True)
    raw = work / "raw_counts.h5ad"
    adata.write_h5ad(raw)
    print(f"[{_clock()}] {name}: {adata.n_obs} cells x {adata.n_vars} genes, technology "
          f"effect {effect['effect']:.3f}; {hidden['hidden_raw']} labels of batch "
          f"{hidden['batch']} hidden -> {raw}", flush=True)  # fmt: skip
    return Dataset(name, raw, batch_key, label_key, processing, effect, hidden, description)


# ---- the project copy and its kedro runs ------------------------------------------------


def copy_project_for(target: Path, dataset: Dataset, threads: int) -> Path:
    """A throw-away copy of the project with conf/local overrides for ``dataset``."""
    import yaml

    local = copy_project(target) / "conf" / "local"
    raw = {"type": "omics_vae.datasets.H5ADDataset", "filepath": str(dataset.raw)}
    (local / "catalog.yml").write_text(yaml.safe_dump({"raw_counts": raw}))
    (local / "parameters_data_processing.yml").write_text(
        yaml.safe_dump({"data_processing": dataset.processing})
    )
    training = {"trainer": {"num_threads": threads, "enable_progress_bar": False}}
    (local / "parameters_training.yml").write_text(yaml.safe_dump({"training": training}))
    return target


def versions(project: Path, entry: str) -> set[str]:
    """The saved versions of a versioned catalog entry (``layer/file``) in the copy."""
    folder = project / "data" / entry
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def kedro_run(
    bench: Bench, label: str, arguments: list[str], entry: str
) -> tuple[str, float, float]:
    """``kedro run <arguments>`` in the copy; returns the version it saved of ``entry``,
    its wall time and the busy fraction of the cores just before it."""
    project, work = bench.project, bench.work
    before = versions(project, entry)
    busy = wait_for_quiet(bench.args.max_busy, bench.args.max_wait)
    kedro = Path(sys.executable).parent / "kedro"
    command = [str(kedro), "run", *arguments]
    print(f"[{_clock()}] {label}: {' '.join(command[1:])}", flush=True)
    env = {**os.environ, "MPLBACKEND": "Agg"}
    measurement = run_measured(
        command, work / "unused.json", work / "logs" / f"{label}.log", cwd=project, env=env
    )
    (new,) = versions(project, entry) - before
    return new, measurement.wall_s, busy


def process(bench: Bench) -> float:
    """The one data-processing run: sets the bench's model_input and its version; returns
    the run's wall time."""
    entry = "05_model_input/model_input.h5ad"
    arguments = ["--pipelines", "data_processing"]
    bench.data_version, wall_s, _ = kedro_run(bench, "data_processing", arguments, entry)
    bench.model_input = _versioned_file(bench.project, entry, bench.data_version)
    return wall_s


def training_params(run: Run, dataset: Dataset, args: argparse.Namespace) -> list[str]:
    """The ``--params`` of one of this project's models (Kedro parses ``[a]`` as a list)."""
    params = [f"training.seed={run.seed}", f"training.trainer.max_epochs={args.epochs}"]
    if run.model == "scvi_vae":
        params.append("training.model=scvi_vae")
    elif run.model == "invae_unsupervised":
        params.append("training.covariates.bio=[]")
    elif run.model == "invae_semisupervised":
        params += [f"training.covariates.bio=[{dataset.hidden_key}]",
                   f"training.covariates.unlabelled_category={UNLABELLED}"]  # fmt: skip
    return params


def train_ours(bench: Bench, run: Run) -> None:
    """Trains and embeds one of this project's models with ``kedro run``; fills ``run``."""
    import yaml

    params = training_params(run, bench.dataset, bench.args)
    arguments = ["--pipelines", "training,embedding", "--load-versions",
                 f"model_input:{bench.data_version}", "--params", ",".join(params)]  # fmt: skip
    entry = "07_model_output/embeddings.h5ad"
    version, run.process_wall_s, run.busy_before = kedro_run(bench, run.name, arguments, entry)
    run.embeddings = _versioned_file(bench.project, entry, version)
    card_path = _versioned_file(bench.project, "06_models/model_card.yml", version)
    card = yaml.safe_load(card_path.read_text())
    run.epochs = int(card["training"]["epochs"])
    run.train_wall_s = float(card["training"]["wall_time_s"])
    run.extra["covariates"] = card["covariates"]


def train_scvi_tools(bench: Bench, seed: int) -> list[Run]:
    """scvi-tools' SCVI (and, when asked for, SCANVI from it) in its own interpreter, on
    the processed cells' raw counts; returns the runs of the selected methods."""
    args, work = bench.args, bench.work
    scvi, scanvi = Run("scvi_tools", seed), Run("scanvi", seed)
    prefix = work / f"scvi_tools_s{seed}"
    result = work / f"scvi_tools_s{seed}.json"
    command = [args.scvi_python, str(Path(__file__).resolve()), "--worker", "scvi",
               "--input", str(bench.model_input), "--batch-key", bench.dataset.batch_key,
               "--seed", str(seed), "--max-epochs", str(bench.max_epochs),
               "--threads", str(args.threads), "--out", str(prefix),
               "--result", str(result)]  # fmt: skip
    if "scanvi" in args.methods:
        command += ["--labels-key", bench.dataset.hidden_key, "--unlabelled", UNLABELLED]
        if args.scanvi_epochs is not None:
            command += ["--scanvi-epochs", str(args.scanvi_epochs)]
    busy = wait_for_quiet(args.max_busy, args.max_wait)
    print(f"[{_clock()}] scvi-tools seed {seed}: SCVI {bench.max_epochs} epochs"
          + (", then SCANVI" if "scanvi" in args.methods else ""), flush=True)  # fmt: skip
    env = with_threads(args.threads)
    measurement = run_measured(command, result, work / "logs" / f"scvi_tools_s{seed}.log", env=env)
    report = measurement.report
    for run, key in ((scvi, "scvi"), (scanvi, "scanvi")):
        if key not in report:
            continue
        run.latent = Path(f"{prefix}_{key}.npy")
        run.train_wall_s = report[key]["train_wall_s"]
        run.epochs = report[key]["epochs"]
        run.process_wall_s, run.busy_before = measurement.wall_s, busy
        run.extra.update({k: v for k, v in report.items() if not isinstance(v, dict)})
    scanvi.predictions = Path(f"{prefix}_scanvi_labels.npy")
    return [run for run in (scvi, scanvi) if run.model in args.methods]


def train_all(bench: Bench) -> list[Run]:
    """Every selected trained method with every seed, in seed order."""
    runs, methods = [], bench.args.methods
    for seed in bench.args.seeds:
        for model in (m for m in OURS if m in methods):
            runs.append(Run(model, seed))
            train_ours(bench, runs[-1])
        if set(SCVI_TOOLS) & set(methods):
            runs += train_scvi_tools(bench, seed)
    runs.sort(key=lambda run: (list(LABELS).index(run.model), run.seed))
    return runs


def _versioned_file(project: Path, entry: str, version: str) -> Path:
    return project / "data" / entry / version / Path(entry).name


def _clock() -> str:
    return time.strftime("%H:%M:%S")


# ---- latents, predicted labels and the combined benchmark --------------------------------


def load_latent(run: Run, model_input: Any) -> Any:
    """The run's corrected latent, rows in ``model_input``'s cell order."""
    import anndata as ad
    import numpy as np

    if run.embeddings is None:
        return np.load(run.latent)
    embedded = ad.read_h5ad(run.embeddings)
    latent = np.asarray(embedded.obsm[embedded.uns["embedding"]["latent_key"]], dtype=np.float32)
    return latent[_rows(embedded.obs_names, model_input.obs_names, run)]


def load_predictions(run: Run, model_input: Any, dataset: Dataset) -> Any:
    """The run's predicted labels in ``model_input``'s cell order; None if it has none.

    This project's models write them to ``obs["predicted_<label key>"]`` of the
    embeddings (the label key is ``uns["embedding"]["label_key"]``, else the model's
    first bio covariate); scANVI's worker to an ``.npy``."""
    import anndata as ad
    import numpy as np

    if run.predictions is not None:
        return np.load(run.predictions) if run.predictions.exists() else None
    if run.embeddings is None:
        return None
    embedded = ad.read_h5ad(run.embeddings)
    bio = run.extra.get("covariates", {}).get("bio") or [None]
    label_key = embedded.uns["embedding"].get("label_key") or bio[0]
    column = f"predicted_{label_key}"
    if not label_key or column not in embedded.obs:
        return None
    labels = embedded.obs[column].astype(str).to_numpy()
    return labels[_rows(embedded.obs_names, model_input.obs_names, run)]


def _rows(names: Any, wanted: Any, run: Run) -> Any:
    rows = names.get_indexer(wanted)
    if (rows < 0).any():
        raise RuntimeError(f"{run.name}: its cells differ from the processed cells")
    return rows


def label_transfer(truth: Any, predicted: Any, mask: Any) -> tuple[float, float]:
    """Accuracy and macro-F1 (over the true labels present) of ``predicted`` on ``mask``."""
    from sklearn.metrics import accuracy_score, f1_score

    if predicted is None or not mask.any():
        return float("nan"), float("nan")
    t, p = truth[mask], predicted[mask]
    labels = sorted(set(t))
    f1 = f1_score(t, p, labels=labels, average="macro", zero_division=0)
    return float(accuracy_score(t, p)), float(f1)


def score_label_transfer(runs: list[Run], model_input: Any, dataset: Dataset) -> dict[str, int]:
    """Fills each run's ``transfer`` scores; returns the numbers of scored cells. Hidden-
    cell scores only for the semi-supervised methods: the others saw those labels."""
    truth = model_input.obs[dataset.label_key].astype(str).to_numpy()
    hidden = (model_input.obs[dataset.hidden_key].astype(str) == UNLABELLED).to_numpy()
    test = (model_input.obs["split"].astype(str) == "test").to_numpy()
    for run in runs:
        predicted = load_predictions(run, model_input, dataset)
        on_hidden = label_transfer(truth, predicted, hidden)
        if run.model not in SEMI_SUPERVISED:
            on_hidden = (float("nan"), float("nan"))
        on_test = label_transfer(truth, predicted, test)
        run.transfer = dict(zip(TRANSFER, (*on_hidden, *on_test), strict=True))
    return {"hidden": int(hidden.sum()), "hidden_test": int((hidden & test).sum()),
            "test": int(test.sum())}  # fmt: skip


def evaluation_params(project: Path, splits: list[str] | None, methods: list[str]) -> Any:
    """The copy's ``conf/base`` evaluation parameters, validated, for ``splits`` and the
    selected baselines (the PCA is computed in any case: PCR comparison needs it)."""
    import yaml

    from omics_vae.schemas.evaluation import EvaluationParams

    base = project / "conf" / "base" / "parameters_evaluation.yml"
    params = EvaluationParams.model_validate(yaml.safe_load(base.read_text())["evaluation"])
    baselines = params.baselines.model_copy(
        update={"pca": "pca" in methods, "harmony": "harmony" in methods}
    )
    return params.model_copy(update={"splits": splits, "baselines": baselines})


def evaluate(
    latents: dict[str, Any], model_input: Any, dataset: Dataset, params: Any, figure: Path
) -> tuple[Any, float, int]:
    """One scib-metrics table of every latent and the selected baselines, on the cells
    of ``params.splits``, through the project's evaluation code and parameters.

    The latents are put beside a placeholder embedding record, so that
    ``prepare_evaluation_cells`` selects the cells and adds the baselines as for any
    model; every latent is then benchmarked under its run's name."""
    import anndata as ad
    import numpy as np

    from omics_vae.evaluation.cells import RECORD_KEY
    from omics_vae.pipelines.evaluation.nodes import (
        benchmark_integration,
        prepare_evaluation_cells,
    )

    base = ad.AnnData(
        np.zeros((model_input.n_obs, 0), dtype=np.float32),
        obs=model_input.obs.copy(),
        obsm={"X_placeholder": np.zeros((model_input.n_obs, 2), dtype=np.float32)},
    )
    base.uns["embedding"] = {"model": "placeholder", "latent_key": "X_placeholder",
                             "technical_key": "", "batch_key": dataset.batch_key,
                             "cell_type_key": dataset.label_key, "supervised": False}  # fmt: skip
    cells = prepare_evaluation_cells(base, model_input, params)
    rows = model_input.obs_names.get_indexer(cells.obs_names)
    keys = dict(cells.uns[RECORD_KEY]["embeddings"])
    keys.pop("placeholder")
    for name, latent in latents.items():
        cells.obsm[f"X_{name}"] = latent[rows]
        keys[name] = f"X_{name}"
    cells.uns[RECORD_KEY]["embeddings"] = keys
    print(f"[{_clock()}] scib-metrics on {cells.n_obs} cells "
          f"({params.splits or 'all splits'}), {len(keys)} embeddings", flush=True)  # fmt: skip
    started = time.perf_counter()
    table, plot = benchmark_integration(cells, params)
    plot.savefig(figure, dpi=110, bbox_inches="tight")
    return table, time.perf_counter() - started, cells.n_obs


# ---- tables -----------------------------------------------------------------------------


def result_rows(dataset: Dataset, scope: str, table: Any, runs: list[Run]) -> list[dict]:
    """The CSV rows of one scib table: one per embedding, with its run's facts."""
    by_name = {run.name: run for run in runs}
    metrics = [c for c in table.columns if c not in ("embedding", "role", "supervised",
                                                     "n_cells", "note")]  # fmt: skip
    rows = []
    for record in table.to_dict("records"):
        run = by_name.get(record["embedding"])
        transfer = run.transfer if run else {}
        rows.append(
            {
                "dataset": dataset.name,
                "cells": scope,
                "method": run.model if run else record["embedding"],
                "label": LABELS[run.model if run else record["embedding"]],
                "seed": run.seed if run else "",
                "n_cells": record["n_cells"],
                "epochs": run.epochs if run else "",
                "train_wall_s": round(run.train_wall_s, 2) if run else "",
                "process_wall_s": round(run.process_wall_s, 2) if run else "",
                "busy_before": round(run.busy_before, 3) if run else "",
                **{key: transfer.get(key, float("nan")) for key in TRANSFER},
                **{column: record[column] for column in metrics},
            }
        )
    return sorted(rows, key=lambda row: (list(LABELS).index(row["method"]), str(row["seed"])))


def summary_rows(rows: list[dict[str, Any]], scope: str) -> list[dict[str, Any]]:
    """Mean ± sample sd over seeds per method, for the table of ``scope``."""
    summary = []
    for method, label in LABELS.items():
        group = [row for row in rows if row["method"] == method and row["cells"] == scope]
        if not group:
            continue
        seeds = [str(row["seed"]) for row in group if row["seed"] != ""]
        walls = [row["train_wall_s"] for row in group if row["train_wall_s"] != ""]
        entry = {
            "method": label,
            "seeds": ",".join(seeds) or "- (deterministic)",
            "epochs": _span([row["epochs"] for row in group if row["epochs"] != ""]),
            **{score: _mean_sd([row[score] for row in group]) for score in SCORES},
        }
        if scope == "test":
            entry.update({key: _mean_sd([row[key] for row in group]) for key in TRANSFER})
            entry["training s"] = _mean_sd(walls, digits=0)
        summary.append(entry)
    return summary


def per_seed_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per trained model and seed (and per baseline): the headline numbers."""
    totals_all = {(r["method"], r["seed"]): r["Total"] for r in rows if r["cells"] == "all"}
    table = []
    for row in (r for r in rows if r["cells"] == "test"):
        entry = {key: row[key] for key in ("label", "seed", "epochs", *SCORES)}
        if totals_all:
            entry["Total (all cells)"] = totals_all.get((row["method"], row["seed"]), "")
        entry.update({key: row[key] for key in TRANSFER})
        entry["train_wall_s"] = row["train_wall_s"]
        table.append(entry)
    return table


def _mean_sd(values: list[Any], digits: int = 3) -> str:
    values = [float(v) for v in values if v != "" and not math.isnan(float(v))]
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def _span(values: list[int]) -> str:
    if not values:
        return "-"
    return str(values[0]) if min(values) == max(values) else f"{min(values)}-{max(values)}"


def write_report(
    dataset: Dataset, rows: list[dict[str, Any]], facts: dict[str, str], notes: list[str],
    command: str,
) -> Path:  # fmt: skip
    """``integration_quality_<dataset>.csv`` (every row) and ``.md`` (the summaries)."""
    stem = RESULTS / f"integration_quality_{dataset.name}"
    write_csv(stem.with_suffix(".csv"), rows)
    text = [
        f"# Integration quality and label transfer on {dataset.name}",
        "",
        f"Command: `{command}`",
        "",
        *[f"- {key}: {value}" for key, value in facts.items()],
        "",
        "Test split (headline): mean ± sample sd over seeds (scib-metrics, unscaled; label "
        "transfer: accuracy and macro-F1 against the true cell types):",
        "",
        markdown_table(summary_rows(rows, "test")),
        "",
    ]
    if any(row["cells"] == "all" for row in rows):
        text += ["All cells (secondary): mean ± sample sd over seeds:", "",
                 markdown_table(summary_rows(rows, "all")), ""]  # fmt: skip
    text += ["Per seed (test split; Total (all cells) from the secondary table):", "",
             markdown_table(per_seed_rows(rows)), "",
             *[f"- {note}" for note in notes], ""]  # fmt: skip
    stem.with_suffix(".md").write_text("\n".join(text))
    return stem.with_suffix(".md")


# ---- one dataset ------------------------------------------------------------------------


def benchmark_dataset(
    name: str, args: argparse.Namespace, reference: dict[str, float] | None, command: str
) -> Path:
    """Prepares, processes, trains, evaluates and reports one dataset; returns the .md."""
    import anndata as ad

    from omics_vae.training.fitting import default_max_epochs

    started = time.perf_counter()
    work = args.work / name
    dataset = prepare_dataset(name, work, args)
    bench = Bench(dataset, copy_project_for(work / "project", dataset, args.threads), work, args)
    processing_s = process(bench)
    model_input = ad.read_h5ad(bench.model_input)
    record = dict(model_input.uns["data_processing"])
    n_train = record["n_cells_per_split"]["train"]
    bench.max_epochs = default_max_epochs(n_train) if args.epochs == "auto" else int(args.epochs)
    runs = train_all(bench)
    counts = score_label_transfer(runs, model_input, dataset)
    latents = {run.name: load_latent(run, model_input) for run in runs}
    rows, timings = [], {}
    for scope in ("test", "all") if args.all_cells else ("test",):
        params = evaluation_params(bench.project, SCOPES[scope], args.methods)
        figure = work / f"scib_{scope}.png"
        table, timings[scope], _ = evaluate(latents, model_input, dataset, params, figure)
        rows += result_rows(dataset, scope, table, runs)
    total_s = time.perf_counter() - started
    facts = report_facts(bench, record, runs, reference, counts)
    facts["wall time"] = (
        f"{total_s / 60:.1f} min (data processing {processing_s:.0f} s; scib tables "
        + ", ".join(f"{scope} {s:.0f} s" for scope, s in timings.items())
        + ")"
    )
    notes = _notes(bench, runs, params, counts)
    report = write_report(dataset, rows, facts, notes, command)
    print(markdown_table(summary_rows(rows, "test")))
    print(f"{name}: {total_s:.0f} s; report {report}; work folder {work}", flush=True)
    if not args.keep:
        shutil.rmtree(bench.project / "data", ignore_errors=True)
    return report


def report_facts(
    bench: Bench, record: dict[str, Any], runs: list[Run], reference: dict[str, float] | None,
    counts: dict[str, int],
) -> dict[str, str]:  # fmt: skip
    """Machine, versions and data facts printed above the tables."""
    dataset, args = bench.dataset, bench.args
    facts = {**machine_facts(), "scib-metrics": _version("scib_metrics"),
             "jax": _version("jax"), "harmonypy": _version("harmonypy")}  # fmt: skip
    scvi_run = next((run for run in runs if run.model in SCVI_TOOLS), None)
    if scvi_run is not None:
        facts["scvi-tools env"] = (f"scvi-tools {scvi_run.extra['scvi-tools']}, torch "
                                   f"{scvi_run.extra['torch']} ({args.scvi_python})")  # fmt: skip
    facts["torch threads per trainer"] = str(args.threads)
    facts["data"] = (
        f"{dataset.description} -> {record['n_cells_after_qc']} cells x "
        f"{record['n_highly_variable_genes']} HVGs, batch key {dataset.batch_key}, split "
        f"{record['n_cells_per_split']}"
    )
    effect = dataset.effect
    facts["technology effect"] = (
        f"{effect['effect']:.3f} (raw {effect['raw']:.3f}, noise floor {effect['noise']:.3f}, "
        f"{effect['comparisons']} cell type x batch-pair comparisons)"
    )
    if reference is not None and dataset.name != "pbmc_3chem":
        verdict = "at least as strong as" if effect["effect"] >= reference["effect"] else (
            "WEAKER than")  # fmt: skip
        facts["technology effect"] += (
            f"; pbmc_3chem's is {reference['effect']:.3f}: this dataset's is {verdict} it"
        )
    facts["hidden labels"] = (
        f"{args.hide_fraction:.0%} of batch {dataset.hidden['batch']} "
        f"({dataset.hidden['hidden_raw']} of {dataset.hidden['batch_cells']} raw cells, seed "
        f"{args.hide_seed}); after QC {counts['hidden']} hidden cells, {counts['hidden_test']} "
        f"of them in the test split ({counts['test']} test cells)"
    )
    return facts


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package.replace("_", "-"))
    except PackageNotFoundError:
        return "not installed"


def _notes(bench: Bench, runs: list[Run], params: Any, counts: dict[str, int]) -> list[str]:
    """What a reader of the report must know: what was scored, on which cells, how."""
    dataset, args, max_epochs = bench.dataset, bench.args, bench.max_epochs
    metrics = params.metrics
    scanvi_source = (
        "scvi-tools' default for a pre-trained SCANVI"
        if args.scanvi_epochs is None
        else "--scanvi-epochs"
    )
    scanvi = next((run for run in runs if run.model == "scanvi"), None)
    return [
        "Scores are scib-metrics' raw values (get_results(min_max_scale=False)) of the "
        "project's evaluation code with conf/base/parameters_evaluation.yml: bio "
        f"{metrics.bio}, batch {metrics.batch}, {params.neighbors} neighbours. Total = 0.4 "
        "batch + 0.6 bio. Bio conservation is scored against the true cell types for "
        "every method.",
        f"Headline table: the {counts['test']} test-split cells only (evaluation.splits = "
        "[test]); Harmony and the PCA baseline are then computed on those cells alone, as "
        "the project's evaluation does for a split. The test split is small (10 % of the "
        "cells by default; --test-fraction changes it): with few cells per type, "
        "kBET-per-label, isolated labels and the silhouettes are noisy, so the secondary "
        "all-cells table (training cells included, the usual scIB practice) is the more "
        "stable comparison of the latents.",
        "All embeddings come from one processed model_input version (the same cells): the "
        f"raw copy carries both {dataset.label_key} (true labels, the processing's cell-type "
        f"key) and {dataset.hidden_key} (with '{UNLABELLED}' for the hidden cells).",
        "invae is given the true cell types as covariates: its bio-conservation scores are "
        "supervised and not comparable at face value with the other rows. "
        "invae_semisupervised and scANVI see the labels of "
        f"{dataset.hidden_key}: the hidden cells (any split) train as unlabelled cells, so "
        "their hidden-cell scores are label transfer (transductive for hidden training "
        f"cells; {counts['hidden_test']} hidden cells are in the test split and never "
        "trained on). Test-split scores: cells never trained on, every label-predicting "
        "method; the other methods predict no labels (-).",
        f"Epochs: at most {max_epochs} ("
        + ("the project's auto rule" if args.epochs == "auto" else "--epochs")
        + "); this project's models stop early "
        "(patience 20 on val/loss, best epoch's weights kept), scvi-tools SCVI runs all "
        f"{max_epochs} (its default, early_stopping=False) on the same train/val cells. "
        "SCANVI starts from the same seed's SCVI and trains "
        + (f"{scanvi.epochs} epochs" if scanvi else "its default epochs")
        + f" ({scanvi_source}); its training s excludes the SCVI's.",
        "training s: the fit's wall time (model card for this project's models, the "
        f"train() call for scvi-tools), {args.threads} torch thread(s), on a shared machine.",
        "Technology effect: within each cell type and pair of batches with >= 20 cells, "
        "the SD across genes (detected in >= 10 % of those cells) of the difference of mean "
        "log1p CP10k expression (cells >= 200 counts), averaged; minus (in quadrature) the "
        "same with batch labels shuffled, the sampling-noise floor.",
    ]


# ---- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.worker == "scvi":
        scvi_worker(args)
        return
    if set(SCVI_TOOLS) & set(args.methods):
        args.scvi_python = args.scvi_python or next(
            (p for p in SCVI_PYTHONS if Path(p).exists()), None
        )
        if args.scvi_python is None:
            raise SystemExit(f"No scvi-tools interpreter: pass --scvi-python ({SCVI_PYTHONS})")
    reference = None
    if args.pbmc.exists():
        import anndata as ad

        keys = PROCESSING["pbmc_3chem"]
        pbmc = ad.read_h5ad(args.pbmc)
        reference = technology_effect(pbmc, keys["batch_key"], keys["cell_type_key"])
    command = " ".join(["python", "benchmarks/integration_quality.py", *(argv or sys.argv[1:])])
    reports = [benchmark_dataset(name, args, reference, command) for name in args.data]
    print("\n".join(str(report) for report in reports))


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", nargs="+", choices=DATASETS, default=list(DATASETS),
                        help="datasets to benchmark, one report each")  # fmt: skip
    parser.add_argument("--methods", nargs="+", choices=list(LABELS), default=list(LABELS),
                        help="methods to benchmark (default: all)")  # fmt: skip
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="training seeds of every trained method")  # fmt: skip
    parser.add_argument("--pbmc", type=Path, default=SHARED_PBMC, help="pbmc_3chem raw counts")
    parser.add_argument("--sim-batch-effect-sd", type=float, default=0.8,
                        help="simulate_counts' batch_effect_sd (0.8: about 1.3x the "
                        "technology effect of pbmc_3chem)")  # fmt: skip
    parser.add_argument("--sim-cells", type=int, default=3000)
    parser.add_argument("--sim-genes", type=int, default=2000)
    parser.add_argument("--sim-batches", type=int, default=3)
    parser.add_argument("--sim-cell-types", type=int, default=6)
    parser.add_argument("--sim-seed", type=int, default=0)
    parser.add_argument("--hide-fraction", type=float, default=0.5,
                        help="share of the largest batch's cells with hidden labels")  # fmt: skip
    parser.add_argument("--hide-seed", type=int, default=0, help="seed of the hidden cells")
    parser.add_argument("--test-fraction", type=float,
                        help="test share of the split (train = 0.9 - it, val = 0.1); "
                        "default: the project's 0.1")  # fmt: skip
    parser.add_argument("--all-cells", action=argparse.BooleanOptionalAction, default=True,
                        help="also score every cell (the secondary table)")  # fmt: skip
    parser.add_argument("--scvi-python", help=f"interpreter with scvi-tools ({SCVI_PYTHONS})")
    parser.add_argument("--epochs", default="auto",
                        help="max epochs but SCANVI's; auto: the project's rule")  # fmt: skip
    parser.add_argument("--scanvi-epochs", type=int,
                        help="SCANVI epochs; default: scvi-tools' (<= 10 pre-trained)")  # fmt: skip
    parser.add_argument("--threads", type=int, default=1, help="torch threads per trainer")
    parser.add_argument("--work", type=Path, default=Path("/tmp/omics-vae-integration-quality"))
    parser.add_argument("--keep", action="store_true", help="keep the copies' data/ afterwards")
    parser.add_argument("--max-busy", type=float, default=0.5,
                        help="wait until the cores are less busy than this")  # fmt: skip
    parser.add_argument("--max-wait", type=float, default=5.0, help="seconds to wait at most")
    worker = parser.add_argument_group("worker (internal)")
    worker.add_argument("--worker", choices=["scvi"], help=argparse.SUPPRESS)
    worker.add_argument("--input", help=argparse.SUPPRESS)  # the processed cells (.h5ad)
    worker.add_argument("--batch-key", help=argparse.SUPPRESS)
    worker.add_argument("--labels-key", help=argparse.SUPPRESS)
    worker.add_argument("--unlabelled", default=UNLABELLED, help=argparse.SUPPRESS)
    worker.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--max-epochs", type=int, help=argparse.SUPPRESS)
    worker.add_argument("--out", help=argparse.SUPPRESS)
    worker.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.data = list(dict.fromkeys(args.data))
    args.methods = list(dict.fromkeys(args.methods))
    return args


if __name__ == "__main__":
    main()
