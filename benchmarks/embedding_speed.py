"""Benchmark: embedding speed of this project's VAEs against scvi-tools (issue 15, item 2).

On the cells of ``benchmarks/train_speed.py``'s data sets (pbmc_3chem, simulated 20k and
100k; raw counts in a sparse ``X``), each framework trains one epoch (untimed: the
weights do not change the cost of a forward pass), then embeds every cell ``--repeats``
times with batches of 1,024 cells, timed:

- ``omics_vae <model>``: ``model.get_latent(adata)``, the call the embedding pipeline
  makes on the processed AnnData (converted chunk by chunk, posterior means);
- ``omics_vae <model> (+log-factorial)``: the same through ``make_tensors`` with the
  likelihood's per-cell constant computed, as every embedding did before;
- ``scvi-tools SCVI``: ``get_latent_representation(adata, batch_size=1024)``, in the
  interpreter of ``--scvi-python``.

Architecture as in the training benchmark (hidden 128, two layers, latent 30). Each
framework runs in a fresh process with ``--threads`` torch threads (1 by default); the
processes are interleaved, round after round, and the median of the rounds is kept.
Reported: wall and CPU seconds per embedding, cells per CPU second, and the ratio to
scvi-tools. Results: ``benchmarks/results/embedding_speed.{csv,md}``.

Usage::

    python benchmarks/embedding_speed.py --scvi-python /tmp/bench-scvi/bin/python
    python benchmarks/embedding_speed.py --datasets pbmc --rounds 1   # a quick check
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import train_speed as ts
from _common import (
    RESULTS,
    machine_facts,
    markdown_table,
    run_measured,
    wait_for_quiet,
    with_threads,
    write_csv,
)

FRAMEWORKS = (
    "omics_vae:scvi_vae",
    "omics_vae:scvi_vae+log-factorial",
    "omics_vae:invae",
    "scvi-tools:SCVI",
)
EMBED_BATCH = 1024


def _timed(embed: Any, repeats: int) -> dict[str, float]:
    """Median wall and CPU seconds of ``repeats`` calls of ``embed``."""
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        embed()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def ours_worker(framework: str, data: Path, repeats: int, result: Path) -> None:
    import tempfile

    import anndata as ad
    import lightning as L

    from omics_vae.models import get_model_class
    from omics_vae.models.trainer import FitSettings, fit

    model_name = framework.split(":")[1].split("+", maxsplit=1)[0]
    adata = ad.read_h5ad(data)
    L.seed_everything(ts.SEED, verbose=False)
    model = get_model_class(model_name).from_anndata(adata, ts._our_hyperparameters(model_name))
    tensors = model.make_tensors(adata, counts_layer=None)
    with tempfile.TemporaryDirectory(prefix="omics-vae-bench-ckpt-") as checkpoints:
        settings = FitSettings(
            max_epochs=1, batch_size=1024, eval_batch_size=EMBED_BATCH, seed=ts.SEED,
            accelerator="cpu", devices=1, early_stopping_patience=None,
            enable_progress_bar=False, checkpoint_dir=checkpoints,
        )  # fmt: skip
        model = fit(model, tensors.subset("train"), tensors.subset("val"), settings).model
    del tensors
    if framework.endswith("+log-factorial"):

        def embed() -> Any:
            return model.get_latent(model.make_tensors(adata, counts_layer=None), EMBED_BATCH)

    else:

        def embed() -> Any:
            return model.get_latent(adata, batch_size=EMBED_BATCH, counts_layer=None)

    embed()  # warm-up: first-call allocations and oneDNN kernel selection
    result.write_text(json.dumps({"n_cells": adata.n_obs, **_timed(embed, repeats)}))


def scvi_tools_worker(data: Path, repeats: int, result: Path) -> None:
    import anndata as ad
    import scvi

    scvi.settings.seed = ts.SEED
    adata = ad.read_h5ad(data)
    scvi.model.SCVI.setup_anndata(adata, batch_key="batch")
    model = scvi.model.SCVI(
        adata, n_hidden=ts.N_HIDDEN, n_layers=ts.N_LAYERS, n_latent=ts.N_LATENT,
        gene_likelihood="nb",
    )  # fmt: skip
    model.train(
        max_epochs=1, batch_size=1024, accelerator="cpu", devices=1, enable_progress_bar=False
    )

    def embed() -> Any:
        return model.get_latent_representation(adata, batch_size=EMBED_BATCH)

    embed()
    result.write_text(json.dumps({"n_cells": adata.n_obs, **_timed(embed, repeats)}))


def measure(framework: str, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    python = args.scvi_python if framework.startswith("scvi-tools") else sys.executable
    result = args.workdir / "result.json"
    command = [python, str(Path(__file__).resolve()), "--worker", framework, "--data",
               str(data), "--repeats", str(args.repeats), "--result", str(result)]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env = with_threads(args.threads, env)
    wait_for_quiet(args.max_busy, args.max_wait)
    log = args.workdir / "logs" / f"{framework.replace(':', '-')}-{data.stem}.log"
    report = run_measured(command, result, log, cwd=args.workdir, env=env).report
    return {"framework": framework, **report}


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    for data in dict.fromkeys(row["data"] for row in rows):
        medians = {}
        for framework in FRAMEWORKS:
            chosen = [r for r in rows if r["data"] == data and r["framework"] == framework]
            if chosen:
                medians[framework] = {
                    key: statistics.median(r[key] for r in chosen) for key in ("wall_s", "cpu_s")
                } | {"n_cells": chosen[0]["n_cells"], "rounds": len(chosen)}
        peer = medians.get("scvi-tools:SCVI")
        for framework, values in medians.items():
            cells_per_cpu_s = values["n_cells"] / values["cpu_s"]
            table.append(
                {
                    "data": data,
                    "cells": values["n_cells"],
                    "framework": framework,
                    "rounds": values["rounds"],
                    "wall s": round(values["wall_s"], 3),
                    "CPU s": round(values["cpu_s"], 3),
                    "cells / CPU s": round(cells_per_cpu_s),
                    "x scvi-tools": round(peer["cpu_s"] / values["cpu_s"], 2) if peer else None,
                }
            )
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", choices=list(ts.DATASETS),
                        default=["pbmc", "sim20k", "sim100k"])  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--repeats", type=int, default=3, help="timed embeddings per process")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scvi-python", default="/tmp/bench-scvi/bin/python")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/omics-vae-bench"))
    parser.add_argument("--max-busy", type=float, default=0.6)
    parser.add_argument("--max-wait", type=float, default=30.0)
    worker = parser.add_argument_group("worker (internal)")
    worker.add_argument("--worker", help=argparse.SUPPRESS)
    worker.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    worker.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker == "scvi-tools:SCVI":
        scvi_tools_worker(args.data, args.repeats, args.result)
        return
    if args.worker:
        ours_worker(args.worker, args.data, args.repeats, args.result)
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.datasets:
        data = ts._prepared(name, args.workdir)
        for round_number in range(args.rounds):
            for framework in FRAMEWORKS:
                row = {"data": name, "round": round_number, **measure(framework, data, args)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    write_csv(RESULTS / "embedding_speed.csv", rows)
    facts = machine_facts()
    table = summarise(rows)
    command = "python benchmarks/embedding_speed.py " + " ".join(sys.argv[1:])
    report = [
        "# Embedding speed against scvi-tools",
        "",
        f"Machine: {facts.get('cpu', '')}, {args.threads} torch thread(s); command: `{command}`.",
        "",
        markdown_table(table),
    ]
    (RESULTS / "embedding_speed.md").write_text("\n".join(report) + "\n")
    print(markdown_table(table))


if __name__ == "__main__":
    main()
