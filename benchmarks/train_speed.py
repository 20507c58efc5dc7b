"""Benchmark: training speed of this project's VAEs against scvi-tools and reference inVAE.

Four implementations train on the same cells for the same epochs, with the same
architecture (hidden width 128, two hidden layers, a 30-dimensional latent), the same
batch size and the same 90 / 10 train / validation cells, each in a fresh process:

- ``omics_vae scvi_vae`` and ``omics_vae invae``: this project's models through
  ``omics_vae.models.trainer.fit`` (Lightning, in-memory batches, per-epoch validation
  and checkpointing, as the training pipeline runs them), in this interpreter.
- ``scvi-tools SCVI``: ``scvi.model.SCVI(n_hidden=128, n_layers=2, n_latent=30,
  gene_likelihood="nb")`` with ``batch_key`` and ``train(max_epochs, batch_size,
  train_size=0.9, early_stopping=False)``, in the interpreter of ``--scvi-python``.
- ``inVAE (ref) FinVAE``: the reference package (PyPI ``invae`` 0.1.0) with
  ``latent_dim_inv=30, latent_dim_spur=5, hidden_dim=128, n_layers=2``, trained with its
  own ``train`` loop, in the interpreter of ``--invae-python``.

Each run trains ``--warmup-epochs`` untimed epochs, then ``--epochs`` timed ones, and
reports seconds per epoch (training batches only, and whole epochs with whatever each
framework does per epoch), training cells per second, peak RSS of the process, and the
validation reconstruction loss: the negative log-likelihood of each validation cell at its
posterior mean, summed over genes, averaged over cells.

Usage::

    .venv/bin/python benchmarks/train_speed.py
    .venv/bin/python benchmarks/train_speed.py --datasets pbmc --batch-sizes 128 --epochs 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS,
    WorkerError,
    machine_facts,
    markdown_table,
    run_measured,
    self_peak_rss_mib,
    wait_for_quiet,
    with_threads,
    write_csv,
    write_report,
)

SHARED_PBMC = Path(__file__).resolve().parents[2] / "shared" / "data" / "pbmc_3chem.h5ad"
N_HIDDEN, N_LAYERS, N_LATENT, N_LATENT_TECH = 128, 2, 30, 5
LEARNING_RATE, WEIGHT_DECAY = 1e-3, 1e-6
VAL_FRACTION, SEED = 0.1, 0
EVAL_BATCH = 1024


@dataclass(frozen=True)
class Dataset:
    """A benchmark data set: a file to read, or simulator arguments."""

    name: str
    n_cells: int
    timed_epochs: int
    repeats: int = 1
    source: Path | None = None
    batch_key: str = "batch"
    label_key: str = "cell_type"


# Fewer timed epochs on larger data keep the whole table within ~15 minutes on 2 cores;
# pbmc's epochs last a tenth of a second, so its runs are repeated and the medians kept.
DATASETS = {
    "pbmc": Dataset("pbmc", 1200, 5, 3, SHARED_PBMC, batch_key="chemistry"),
    "sim20k": Dataset("sim20k", 20_000, 3),
    "sim100k": Dataset("sim100k", 100_000, 1),
}
FRAMEWORKS = ("omics_vae:scvi_vae", "omics_vae:invae", "scvi-tools:SCVI", "invae-ref:FinVAE")


# ---- workers, one per framework; each imports only what its interpreter has -------------


def prepare_worker(name: str, out: Path) -> None:
    """Writes the benchmark copy of a data set: raw counts in X, batch, cell_type, split."""
    import anndata as ad
    import numpy as np
    import pandas as pd
    from scipy import sparse

    spec = DATASETS[name]
    if spec.source is not None:
        adata = ad.read_h5ad(spec.source)
    else:
        from omics_vae.data.simulate import simulate_counts

        adata = simulate_counts(n_cells=spec.n_cells, n_genes=2000, seed=SEED)
    counts = sparse.csr_matrix(adata.X, dtype=np.float32)
    keep = np.asarray(counts.sum(axis=1)).ravel() > 0
    obs = pd.DataFrame(
        {
            "batch": adata.obs[spec.batch_key].astype(str).astype("category").to_numpy(),
            "cell_type": adata.obs[spec.label_key].astype(str).astype("category").to_numpy(),
        },
        index=adata.obs_names.astype(str),
    )[keep]
    obs["split"] = pd.Categorical(_split_labels(int(keep.sum())), categories=["train", "val"])
    out_data = ad.AnnData(X=counts[keep], obs=obs, var=pd.DataFrame(index=adata.var_names))
    out_data.write_h5ad(out.with_suffix(".partial.h5ad"))
    out.with_suffix(".partial.h5ad").rename(out)


def _split_labels(n_cells: int) -> Any:
    import numpy as np

    labels = np.full(n_cells, "train", dtype=object)
    order = np.random.default_rng(SEED).permutation(n_cells)
    labels[order[: round(VAL_FRACTION * n_cells)]] = "val"
    return labels


def ours_worker(model_name: str, data: Path, batch_size: int, epochs: int, result: Path) -> None:
    """This project's model, trained with ``omics_vae.models.trainer.fit``."""
    import tempfile

    import anndata as ad
    import lightning as L

    from omics_vae.models import get_model_class
    from omics_vae.models.trainer import FitSettings, fit

    started = time.perf_counter()
    adata = ad.read_h5ad(data)
    L.seed_everything(SEED, verbose=False)
    model = get_model_class(model_name).from_anndata(adata, _our_hyperparameters(model_name))
    tensors = model.make_tensors(adata, counts_layer=None)
    train, val = tensors.subset("train"), tensors.subset("val")
    clock = _EpochClock()
    _instrument_lightning_module(model, clock)
    setup_s = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="omics-vae-bench-ckpt-") as checkpoints:
        settings = FitSettings(
            max_epochs=epochs, batch_size=batch_size, eval_batch_size=EVAL_BATCH, seed=SEED,
            accelerator="cpu", devices=1, early_stopping_patience=None,
            enable_progress_bar=False, checkpoint_dir=checkpoints,
        )  # fmt: skip
        fitted = fit(model, train, val, settings).model
    nll = fitted.reconstruction_error(val, batch_size=EVAL_BATCH)
    _write_training_report(
        result, clock, train.n_obs, val.n_obs, float(nll.mean()), setup_s=setup_s
    )


def _our_hyperparameters(model_name: str) -> dict[str, Any]:
    common = {"n_hidden": N_HIDDEN, "n_layers": N_LAYERS, "dropout": 0.1,
              "learning_rate": LEARNING_RATE, "weight_decay": WEIGHT_DECAY}  # fmt: skip
    if model_name == "invae":
        # Prior means fixed at 0, as the reference FinVAE's default (fix_mean_prior=True).
        return {**common, "n_latent_bio": N_LATENT, "n_latent_tech": N_LATENT_TECH,
                "learn_prior_mean": False, "bio_keys": ["cell_type"],
                "tech_keys": ["batch"]}  # fmt: skip
    return {**common, "n_latent": N_LATENT, "bio_keys": [], "tech_keys": ["batch"]}


def scvi_tools_worker(data: Path, batch_size: int, epochs: int, result: Path) -> None:
    """scvi-tools' SCVI at the same architecture, NB likelihood, no early stopping."""
    import anndata as ad
    import numpy as np
    import scvi

    started = time.perf_counter()
    scvi.settings.seed = SEED
    adata = ad.read_h5ad(data)
    is_val = (adata.obs["split"] == "val").to_numpy()
    train_idx, val_idx = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
    model = scvi.model.SCVI(
        adata, n_hidden=N_HIDDEN, n_layers=N_LAYERS, n_latent=N_LATENT, gene_likelihood="nb"
    )
    clock = _EpochClock()
    setup_s = time.perf_counter() - started
    model.train(
        max_epochs=epochs, batch_size=batch_size, train_size=0.9, early_stopping=False,
        accelerator="cpu", devices=1, enable_progress_bar=False,
        callbacks=[_lightning_callback(clock)],
        # The same validation cells as every other framework (train_size is then moot).
        datasplitter_kwargs={"external_indexing": [train_idx, val_idx]},
        plan_kwargs={"lr": LEARNING_RATE, "weight_decay": WEIGHT_DECAY},
    )  # fmt: skip
    nll = _scvi_posterior_mean_nll(model, adata, val_idx)
    _write_training_report(result, clock, len(train_idx), len(val_idx), nll, setup_s=setup_s)


def _scvi_posterior_mean_nll(model: Any, adata: Any, indices: Any) -> float:
    """Mean over cells of -log p(x | z = E[q(z|x)]), summed over genes, as for the others."""
    import torch

    module = model.module
    module.eval()
    loader = model._make_data_loader(adata=adata, indices=indices, batch_size=EVAL_BATCH)
    total, count = 0.0, 0
    with torch.inference_mode():
        for tensors in loader:
            inference = module.inference(**module._get_inference_input(tensors))
            inference["z"] = inference["qz"].loc
            generative = module.generative(**module._get_generative_input(tensors, inference))
            counts = tensors["X"]
            total += float(-generative["px"].log_prob(counts).sum(-1).sum())
            count += counts.shape[0]
    return total / count


def invae_ref_worker(data: Path, batch_size: int, epochs: int, warmup: int, result: Path) -> None:
    """The reference inVAE (theislab/inVAE 0.1.0) ``FinVAE`` with its own training loop."""
    import warnings

    import anndata as ad
    import numpy as np
    import torch
    from inVAE import FinVAE

    # anndata 0.8's AnnLoader indexes Series by position, which pandas 2 warns about on
    # every batch; silence it rather than print it thousands of times.
    warnings.simplefilter("ignore", FutureWarning)
    started = time.perf_counter()
    torch.manual_seed(SEED)
    np.random.seed(SEED)  # noqa: NPY002 - the reference package draws from the global RNG
    adata = ad.read_h5ad(data)
    train = adata[(adata.obs["split"] == "train").to_numpy()].copy()
    val = adata[(adata.obs["split"] == "val").to_numpy()].copy()
    model = FinVAE(
        adata=train, layer=None,
        inv_covar_keys={"cont": [], "cat": ["cell_type"]},
        spur_covar_keys={"cont": [], "cat": ["batch"]},
        latent_dim_inv=N_LATENT, latent_dim_spur=N_LATENT_TECH, n_layers=N_LAYERS,
        hidden_dim=N_HIDDEN, batch_size=batch_size, device="cpu", decoder_dist="nb",
        batch_norm=True, dropout_rate=0.1,
    )  # fmt: skip
    setup_s = time.perf_counter() - started
    clock = _EpochClock()
    _train_invae_ref(model, clock, warmup, epochs)
    nll = _invae_ref_posterior_mean_nll(model, val)
    _write_training_report(result, clock, train.n_obs, val.n_obs, nll, setup_s=setup_s)


def _train_invae_ref(model: Any, clock: _EpochClock, warmup: int, epochs: int) -> None:
    """Its ``train`` has no hooks: one call per epoch, timed around the call (it rebuilds
    its Adam optimiser per call, which costs microseconds)."""
    for _ in range(warmup + epochs):
        clock.start()
        model.train(
            n_epochs=1, lr_train=LEARNING_RATE, weight_decay=WEIGHT_DECAY, print_every_n_epochs=1
        )
        clock.train_done()
        clock.end()


def _invae_ref_posterior_mean_nll(model: Any, val: Any) -> float:
    import torch
    from anndata.experimental.pytorch import AnnLoader

    module = model.module
    module.eval()
    loader = AnnLoader(val, batch_size=EVAL_BATCH, convert=model.data_loading_encoders)
    data = loader.dataset[:]
    with torch.no_grad():
        inv = torch.cat([data.obs[k].float() for k in model.list_inv_covar], dim=1)
        spur = torch.cat([data.obs[k].float() for k in model.list_spur_covar], dim=1)
        mean, _ = module.encode(data.X, inv, spur)
        return float(-module.get_log_decoder_density(data.X, mean).mean())


def profile_worker(model_name: str, data: Path, batch_size: int, result: Path) -> None:
    """Where one training epoch of our model goes: a plain loop (no Lightning) timed by
    phase with ``torch.profiler.record_function``, plus the top operators.

    The phases are the batch gather, the forward pass split into inference, generative
    and loss (NB log-likelihood + KL), the backward pass and the optimiser step; the
    benchmark's Lightning epoch time minus this loop's time is Lightning's overhead plus
    validation and checkpointing.
    """
    import anndata as ad
    import lightning as L
    import torch
    from torch.profiler import ProfilerActivity, profile, record_function

    from omics_vae.data.tensors import InMemoryBatchLoader
    from omics_vae.models import get_model_class

    adata = ad.read_h5ad(data)
    L.seed_everything(SEED, verbose=False)
    _tune_allocator_as_fit_does()
    model = get_model_class(model_name).from_anndata(adata, _our_hyperparameters(model_name))
    train = model.make_tensors(adata, counts_layer=None).subset("train")
    loader = InMemoryBatchLoader(train, batch_size, shuffle=True, seed=SEED)
    optimizer = model.configure_optimizers()
    module = model.module.train()

    def epoch() -> None:
        batches = iter(loader)
        while True:
            with record_function("phase: batch gather"):
                batch = next(batches, None)
            if batch is None:
                return
            with record_function("phase: forward inference"):
                inference = module.inference(batch)
            with record_function("phase: forward generative"):
                generative = module.generative(**module.generative_inputs(batch, inference))
            with record_function("phase: forward loss (NB + KL)"):
                loss = module.loss(batch, inference, generative, kl_weight=1.0).loss
            with record_function("phase: backward"):
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            with record_function("phase: optimiser step"):
                optimizer.step()

    epoch()  # warm-up
    started, cpu_started = time.perf_counter(), time.process_time()
    epoch()
    plain_s, plain_cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        epoch()
    events = profiler.key_averages()
    phases = {e.key: e.cpu_time_total / 1e6 for e in events if e.key.startswith("phase: ")}
    top = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:15]
    write_report(
        result,
        {
            "plain_loop_s": plain_s,
            "plain_loop_cpu_s": plain_cpu_s,
            "n_train": train.n_obs,
            "threads": torch.get_num_threads(),
            "phases_s": phases,
            "top_ops_self_s": {e.key: e.self_cpu_time_total / 1e6 for e in top},
        },
    )


def _tune_allocator_as_fit_does() -> None:
    """``fit`` raises glibc's malloc thresholds for its models; the plain loop does too."""
    try:
        from omics_vae.models.allocator import tune_cpu_allocator
    except ImportError:
        return
    tune_cpu_allocator()


class _EpochClock:
    """Start, end-of-training-batches and end times of every epoch (wall clock), and the
    process CPU time (all threads) of each epoch's training batches."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.train_ends: list[float] = []
        self.ends: list[float] = []
        self.cpu_starts: list[float] = []
        self.cpu_train_ends: list[float] = []

    def start(self) -> None:
        self.cpu_starts.append(time.process_time())
        self.starts.append(time.perf_counter())

    def train_done(self) -> None:
        self.train_ends.append(time.perf_counter())
        self.cpu_train_ends.append(time.process_time())

    def end(self) -> None:
        self.ends.append(time.perf_counter())


def _instrument_lightning_module(model: Any, clock: _EpochClock) -> None:
    """Wraps a LightningModule's epoch hooks (``fit`` takes no callbacks) to time epochs.

    Lightning runs validation and the checkpoint callbacks between the last training
    batch and ``on_train_epoch_end``, so ``train_done`` is taken at ``on_validation_epoch
    _start`` (or at the epoch's end when nothing is validated).
    """

    def wrap(hook: str, before: Any) -> None:
        original = getattr(model, hook)

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            before()
            return original(*args, **kwargs)

        setattr(model, hook, wrapped)

    def validation_start() -> None:
        if len(clock.train_ends) < len(clock.starts):
            clock.train_done()

    def epoch_end() -> None:
        validation_start()
        clock.end()

    wrap("on_train_epoch_start", clock.start)
    wrap("on_validation_epoch_start", validation_start)
    wrap("on_train_epoch_end", epoch_end)


def _lightning_callback(clock: _EpochClock) -> Any:
    """The same timing as a Lightning callback, for scvi-tools' ``train(callbacks=...)``."""
    from lightning.pytorch.callbacks import Callback

    class EpochTimer(Callback):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            clock.start()

        def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking:
                return
            if len(clock.train_ends) < len(clock.starts):
                clock.train_done()

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.on_validation_epoch_start(trainer, pl_module)
            clock.end()

    return EpochTimer()


def _write_training_report(
    result: Path, clock: _EpochClock, n_train: int, n_val: int, val_nll: float, *, setup_s: float
) -> None:
    write_report(
        result,
        {
            "epoch_s": [e - s for s, e in zip(clock.starts, clock.ends, strict=False)],
            "train_s": [e - s for s, e in zip(clock.starts, clock.train_ends, strict=False)],
            "train_cpu_s": [
                e - s for s, e in zip(clock.cpu_starts, clock.cpu_train_ends, strict=False)
            ],
            "n_train": n_train,
            "n_val": n_val,
            "val_nll": val_nll,
            "setup_s": setup_s,
            "worker_peak_rss_mib": self_peak_rss_mib(),
        },
    )


# ---- the driver ------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.worker:
        _dispatch_worker(args)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.datasets:
        data = _prepared(name, args.workdir)
        for batch_size in args.batch_sizes:
            rows += _measure_setting(name, data, batch_size, args)
    _report(rows, args)
    if args.profile:
        _profile_ours(args)


def _profile_ours(args: argparse.Namespace) -> None:
    """Runs ``profile_worker`` for both of our models on the first simulated data set."""
    name = next((n for n in args.datasets if DATASETS[n].source is None), args.datasets[0])
    data = _prepared(name, args.workdir)
    result = args.workdir / "profile.json"
    for model_name in ("scvi_vae", "invae"):
        for batch_size in args.batch_sizes:
            wait_for_quiet(args.max_busy, args.max_wait)
            command = [sys.executable, __file__, "--worker", f"profile:{model_name}",
                       "--data", str(data), "--batch-size", str(batch_size),
                       "--result", str(result)]  # fmt: skip
            log = args.workdir / "logs" / f"profile-{model_name}-{name}-b{batch_size}.log"
            report = run_measured(command, result, log).report
            _print_profile(f"{model_name} on {name}, batch {batch_size}", report)


def _print_profile(title: str, report: dict[str, Any]) -> None:
    total = report["plain_loop_s"]
    print(f"\nProfile: {title} ({report['threads']} threads): a plain training loop takes "
          f"{total:.2f} s/epoch ({report['n_train'] / total:,.0f} cells/s, "
          f"CPU {report['plain_loop_cpu_s']:.2f} s). Under torch.profiler, by phase:")  # fmt: skip
    for key, seconds in sorted(report["phases_s"].items(), key=lambda kv: -kv[1]):
        print(f"  {key.removeprefix('phase: '):<32} {seconds:7.3f} s")
    print("  top operators by self CPU time:")
    for key, seconds in report["top_ops_self_s"].items():
        print(f"    {key:<40} {seconds:7.3f} s")


def _measure_setting(
    name: str, data: Path, batch_size: int, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Every framework on one data set and batch size, ``repeats`` times interleaved;
    each framework's row holds the medians of its repeats."""
    repeats = args.repeats or DATASETS[name].repeats
    runs: dict[str, list[dict[str, Any]]] = {f: [] for f in args.frameworks}
    for _ in range(repeats):
        for framework in args.frameworks:
            row = _measure(framework, name, data, batch_size, args)
            print(_progress_line(row), flush=True)
            runs[framework].append(row)
    return [_median_row(framework_runs) for framework_runs in runs.values()]


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in runs if "error" not in r] or runs
    row = dict(ok[0])
    for key, value in row.items():
        if isinstance(value, float):
            row[key] = statistics.median(r[key] for r in ok)
    return {**row, "repeats": len(ok)}


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--frameworks", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument(
        "--repeats", type=int, default=None,
        help="Runs of each setting, medians kept (default per data set: pbmc 3, others 1).",
    )  # fmt: skip
    parser.add_argument(
        "--epochs", type=int, default=None,
        help="Timed epochs (default per data set: pbmc 5, sim20k 3, sim100k 1).",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=0,
        help="CPU threads of every framework (OMP/MKL); 0 keeps torch's default (all cores).",
    )  # fmt: skip
    parser.add_argument(
        "--max-busy", type=float, default=0.25,
        help="Before each run, wait until other processes keep less than this share of the "
        "cores busy (the machine may be shared) ...",
    )  # fmt: skip
    parser.add_argument("--max-wait", type=float, default=180, help="... for at most this (s).")
    parser.add_argument("--scvi-python", default="/tmp/bench-scvi/bin/python")
    parser.add_argument("--invae-python", default="/tmp/bench-invae/bin/python")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/omics-vae-bench/train_speed"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--tag", default="", help="Suffix of the result file names.")
    parser.add_argument(
        "--profile", action="store_true",
        help="After the table, profile an epoch of our models (torch.profiler) by phase.",
    )  # fmt: skip
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--dataset", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--total-epochs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _dispatch_worker(args: argparse.Namespace) -> None:
    if args.worker == "prepare":
        prepare_worker(args.dataset, args.data)
    elif args.worker.startswith("profile:"):
        profile_worker(args.worker.split(":", 1)[1], args.data, args.batch_size, args.result)
    elif args.worker.startswith("omics_vae:"):
        model_name = args.worker.split(":", 1)[1]
        ours_worker(model_name, args.data, args.batch_size, args.total_epochs, args.result)
    elif args.worker == "scvi-tools:SCVI":
        scvi_tools_worker(args.data, args.batch_size, args.total_epochs, args.result)
    elif args.worker == "invae-ref:FinVAE":
        warmup = args.total_epochs - args.epochs
        invae_ref_worker(args.data, args.batch_size, args.epochs, warmup, args.result)
    else:
        raise ValueError(f"unknown worker {args.worker!r}")


def _prepared(name: str, work: Path) -> Path:
    path = work / f"{name}.h5ad"
    if not path.exists():
        print(f"preparing {name} -> {path} (not timed)", flush=True)
        command = [sys.executable, __file__, "--worker", "prepare", "--dataset", name]
        run_measured([*command, "--data", str(path)], work / "prep.json", work / "prep.log")
    return path


def _interpreter(framework: str, args: argparse.Namespace) -> str:
    if framework.startswith("scvi-tools"):
        return args.scvi_python
    if framework.startswith("invae-ref"):
        return args.invae_python
    return sys.executable


def _measure(
    framework: str, name: str, data: Path, batch_size: int, args: argparse.Namespace
) -> dict[str, Any]:
    timed = args.epochs or DATASETS[name].timed_epochs
    total = args.warmup_epochs + timed
    result = args.workdir / "result.json"
    log = args.workdir / "logs" / f"{framework.replace(':', '-')}-{name}-b{batch_size}.log"
    command = [
        _interpreter(framework, args), str(Path(__file__).resolve()), "--worker", framework,
        "--data", str(data), "--batch-size", str(batch_size), "--total-epochs", str(total),
        "--epochs", str(timed), "--result", str(result),
    ]  # fmt: skip
    row: dict[str, Any] = {"data": name, "framework": framework, "batch": batch_size,
                           "epochs": f"{args.warmup_epochs}+{timed}"}  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore::FutureWarning"}
    if args.threads:
        env = with_threads(args.threads, env)
    busy = wait_for_quiet(args.max_busy, args.max_wait)
    load_before = os.getloadavg()[0]
    try:
        measurement = run_measured(command, result, log, cwd=args.workdir, env=env)
    except WorkerError as error:
        print(error, file=sys.stderr)
        return {**row, "error": str(error).splitlines()[-1][:200]}
    return {**row, **_speed_columns(measurement.report, args.warmup_epochs),
            "peak RSS MiB": measurement.peak_rss_mib, "val NLL": measurement.report["val_nll"],
            "process s": measurement.wall_s,
            "busy before": busy, "load avg": max(load_before, os.getloadavg()[0])}  # fmt: skip


def _speed_columns(report: dict[str, Any], warmup: int) -> dict[str, Any]:
    """Medians over the timed epochs (the first ``warmup`` epochs are dropped)."""
    n_train = report["n_train"]
    train_s = statistics.median(report["train_s"][warmup:])
    epoch_s = statistics.median(report["epoch_s"][warmup:])
    cpu_s = statistics.median(report["train_cpu_s"][warmup:])
    return {
        "train cells": n_train,
        "train s/epoch": train_s,
        "epoch s (all)": epoch_s,
        "CPU s/epoch": cpu_s,
        "cells/s (train)": n_train / train_s,
        "cells/s (epoch)": n_train / epoch_s,
        "cells/CPU-s": n_train / cpu_s,
    }


def _progress_line(row: dict[str, Any]) -> str:
    if "error" in row:
        return f"{row['data']:>8} b{row['batch']:<5} {row['framework']:<20} ERROR {row['error']}"
    return (
        f"{row['data']:>8} b{row['batch']:<5} {row['framework']:<20} "
        f"train {row['train s/epoch']:7.2f} s/epoch  {row['cells/s (train)']:8.0f} cells/s  "
        f"epoch {row['epoch s (all)']:7.2f} s  CPU {row['CPU s/epoch']:7.2f} s  "
        f"RSS {row['peak RSS MiB']:6.0f} MiB  load {row['load avg']:.1f}  "
        f"val NLL {row['val NLL']:9.1f}  ({row['process s']:.0f} s)"
    )


def _with_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Adds our speed relative to scvi-tools and to the reference inVAE at equal settings."""
    out = []
    for row in rows:
        peers = {r["framework"]: r for r in rows
                 if r["data"] == row["data"] and r["batch"] == row["batch"]}  # fmt: skip
        scvi, ref = peers.get("scvi-tools:SCVI"), peers.get("invae-ref:FinVAE")
        out.append({**row, "x scvi-tools": _ratio(row, scvi, "cells/s (epoch)"),
                    "x scvi-tools (CPU)": _ratio(row, scvi, "cells/CPU-s"),
                    "x inVAE ref": _ratio(row, ref, "cells/s (epoch)"),
                    "x inVAE ref (CPU)": _ratio(row, ref, "cells/CPU-s")})  # fmt: skip
    return out


def _ratio(row: dict[str, Any], peer: dict[str, Any] | None, column: str) -> float:
    """``row``'s speed over ``peer``'s in ``column``; NaN when either is missing."""
    if peer is None or column not in peer or column not in row:
        return float("nan")
    return row[column] / peer[column]


# Columns of the Markdown table (the CSV has every column, CPU times included).
SUMMARY_COLUMNS = (
    "data", "batch", "framework", "epochs", "train s/epoch", "epoch s (all)",
    "cells/s (train)", "cells/s (epoch)", "peak RSS MiB", "val NLL", "x scvi-tools",
    "x inVAE ref", "busy before",
)  # fmt: skip


def _report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    rows = _with_ratios(rows)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    uniform = [{c: r.get(c, "") for c in columns} for r in rows]
    suffix = f"_{args.tag}" if args.tag else ""
    write_csv(args.results / f"train_speed{suffix}.csv", uniform)
    facts = {
        **machine_facts(),
        "scvi-tools env": json.dumps(_versions(args.scvi_python, ("scvi-tools", "torch"))),
        "inVAE env": json.dumps(_versions(args.invae_python, ("invae", "torch", "anndata"))),
    }
    table = markdown_table([{c: r.get(c, "") for c in SUMMARY_COLUMNS} for r in rows])
    text = "\n".join(f"- {k}: {v}" for k, v in facts.items()) + "\n\n" + table
    (args.results / f"train_speed{suffix}.md").write_text(text + "\n")
    print("\n" + text)


def _versions(python: str, packages: tuple[str, ...]) -> dict[str, str]:
    import subprocess

    code = (
        "import importlib.metadata as m, json, sys\n"
        "print(json.dumps({p: m.version(p) for p in sys.argv[1:]}))\n"
    )
    try:
        done = subprocess.run(
            [python, "-c", code, *packages], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return {"error": f"cannot run {python}"}
    return json.loads(done.stdout)


if __name__ == "__main__":
    main()
