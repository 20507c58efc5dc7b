"""Benchmark: what a training step costs besides the model (issue 15, item 1).

Two measurements on ``benchmarks/train_speed.py``'s prepared data sets, in one process
with ``--threads`` torch threads (1 by default), CPU seconds beside wall time:

- ``fit`` against a plain loop. The same model and batches train one epoch through
  ``omics_vae.models.trainer.fit``, then one epoch through a loop of forward, zero_grad,
  backward and an optimiser step; the two alternate for ``--rounds`` rounds (the first
  is dropped) and only the training batches are timed. Run for the benchmark's
  architecture, and for a model 4 units wide on 20 genes, whose step is almost all
  overhead, so its difference per step is the trainer's own cost.
- The histogram term of the NB likelihood (``log_rising_factorial_sum``, forward and
  backward) per batch: counted from the batch's precomputed ``count_keys``, against
  building the histogram from the dense batch, as every step did before.

Results: ``benchmarks/results/step_overhead.{csv,md}``.

Usage::

    python benchmarks/step_overhead.py
    python benchmarks/step_overhead.py --datasets pbmc --rounds 3   # a quick check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_speed as ts
from _common import RESULTS, machine_facts, markdown_table, write_csv

TINY_WIDTH, TINY_GENES = 4, 20


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> tuple[float, float]:
    return time.perf_counter() - start[0], time.process_time() - start[1]


class _Setup:
    """A model family, its hyperparameters and the training and validation tensors."""

    def __init__(self, model_name: str, adata: Any, width: int, batch_size: int) -> None:
        from omics_vae.models import get_model_class

        self.model_class = get_model_class(model_name)
        self.adata = adata
        self.hyperparameters = {**ts._our_hyperparameters(model_name), "n_hidden": width}
        tensors = self.new_model().make_tensors(adata, counts_layer=None)
        self.train, self.val = tensors.subset("train"), tensors.subset("val")
        self.batch_size = batch_size

    def new_model(self) -> Any:
        import lightning as L

        L.seed_everything(ts.SEED, verbose=False)
        return self.model_class.from_anndata(self.adata, self.hyperparameters)

    def plain_epoch(self) -> tuple[float, float]:
        from omics_vae.data.tensors import InMemoryBatchLoader

        model = self.new_model()
        loader = InMemoryBatchLoader(self.train, self.batch_size, seed=ts.SEED)
        optimizer = model.configure_optimizers()
        module = model.module.train()
        start = _clock()
        for batch in loader:
            loss = module(batch, kl_weight=model.kl_weight).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return _since(start)

    def fit_epoch(self) -> tuple[float, float]:
        from lightning.pytorch.callbacks import Callback

        from omics_vae.models.trainer import FitSettings, fit

        class TrainingBatches(Callback):
            def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                self.start = _clock()

            def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                self.seconds = _since(self.start)

        clock = TrainingBatches()
        with tempfile.TemporaryDirectory(prefix="omics-vae-bench-ckpt-") as checkpoints:
            settings = FitSettings(
                max_epochs=1, batch_size=self.batch_size, seed=ts.SEED, accelerator="cpu",
                devices=1, early_stopping_patience=None, enable_progress_bar=False,
                checkpoint_dir=checkpoints,
            )  # fmt: skip
            fit(self.new_model(), self.train, self.val, settings, callbacks=[clock])
        return clock.seconds


def fit_against_plain(setup: _Setup, rounds: int) -> dict[str, Any]:
    """Medians over ``rounds - 1`` interleaved rounds (the first warms up)."""
    plain, fitted = [], []
    for index in range(rounds):
        plain_s, fit_s = setup.plain_epoch(), setup.fit_epoch()
        if index:
            plain.append(plain_s)
            fitted.append(fit_s)
    from omics_vae.data.tensors import batch_bounds

    steps = len(batch_bounds(setup.train.n_obs, setup.batch_size))
    plain_cpu = statistics.median(cpu for _, cpu in plain)
    fit_cpu = statistics.median(cpu for _, cpu in fitted)
    return {
        "steps/epoch": steps,
        "plain CPU s/epoch": plain_cpu,
        "fit CPU s/epoch": fit_cpu,
        "plain wall s/epoch": statistics.median(wall for wall, _ in plain),
        "fit wall s/epoch": statistics.median(wall for wall, _ in fitted),
        "fit / plain (CPU)": statistics.median(
            f[1] / p[1] for p, f in zip(plain, fitted, strict=True)
        ),
        "overhead ms/step (CPU)": 1e3 * (fit_cpu - plain_cpu) / steps,
    }


def histogram_term(adata: Any, batch_size: int, n_batches: int = 40) -> list[dict[str, Any]]:
    """Forward and backward of the histogram term per batch, from keys and from the
    dense batch, for dense and sparse storage."""
    import torch

    from omics_vae.data.tensors import CountsTensors
    from omics_vae.models.distributions import log_rising_factorial_sum

    rows = []
    generator = torch.Generator().manual_seed(ts.SEED)
    theta = (torch.rand(adata.n_vars, generator=generator) * 5 + 0.1).requires_grad_(True)
    for storage in ("dense", "sparse"):
        tensors = CountsTensors.from_anndata(
            adata, None, tech_keys=["batch"], counts_format=storage
        ).subset("train")
        batches = [
            tensors.gather(torch.randperm(tensors.n_obs, generator=generator)[:batch_size])
            for _ in range(n_batches)
        ]
        for route in ("dense batch", "count_keys"):
            times = []
            for _ in range(3):
                start = _clock()
                for batch in batches:
                    keys = batch["count_keys"] if route == "count_keys" else None
                    log_rising_factorial_sum(batch["counts"], theta, keys).backward()
                times.append(_since(start))
            wall, cpu = min(times, key=lambda t: t[1])
            rows.append({"storage": storage, "histogram from": route,
                         "wall ms/batch": 1e3 * wall / n_batches,
                         "CPU ms/batch": 1e3 * cpu / n_batches})  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    import anndata as ad
    import torch

    torch.set_num_threads(args.threads)
    from omics_vae.models.allocator import tune_cpu_allocator

    tune_cpu_allocator()  # as fit does, for the plain loop too
    args.workdir.mkdir(parents=True, exist_ok=True)
    overhead, histogram = [], []
    for name in args.datasets:
        adata = ad.read_h5ad(ts._prepared(name, args.workdir))
        tiny = adata[:, :TINY_GENES].copy()
        tiny = tiny[tiny.X.sum(axis=1).A1 > 0].copy()
        for batch_size in args.batch_sizes:
            for row in histogram_term(adata, batch_size):
                histogram.append({"data": name, "batch": batch_size, **row})
            cases = [(m, adata, ts.N_HIDDEN, "benchmark") for m in args.models]
            cases.append(("scvi_vae", tiny, TINY_WIDTH, f"{TINY_WIDTH} units, {TINY_GENES} genes"))
            for model_name, data, width, label in cases:
                setup = _Setup(model_name, data, width, batch_size)
                row = fit_against_plain(setup, args.rounds)
                overhead.append({"data": name, "batch": batch_size, "model": model_name,
                                 "architecture": label, **row})  # fmt: skip
                print(overhead[-1], flush=True)
    _report(overhead, histogram, args)


def _report(
    overhead: list[dict[str, Any]], histogram: list[dict[str, Any]], args: argparse.Namespace
) -> None:
    write_csv(args.results / "step_overhead.csv", overhead)
    write_csv(args.results / "step_overhead_histogram.csv", histogram)
    facts = "\n".join(f"- {k}: {v}" for k, v in machine_facts().items())
    text = (
        f"{facts}\n- torch threads: {args.threads}\n\n"
        f"### fit against a plain loop\n\n{markdown_table(overhead)}\n\n"
        f"### The likelihood's histogram term\n\n{markdown_table(histogram)}\n"
    )
    (args.results / "step_overhead.md").write_text(text)
    print("\n" + text)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--datasets", nargs="+", choices=list(ts.DATASETS), default=["pbmc", "sim20k"]
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 1024])
    parser.add_argument("--models", nargs="+", default=["scvi_vae", "invae"])
    parser.add_argument("--rounds", type=int, default=6, help="Interleaved rounds (+1 warm-up).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/omics-vae-bench/train_speed"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
