"""Benchmark: a million cells on one machine, through the pipelines, against scvi-tools.

Stages, each a fresh process whose wall time, CPU seconds and peak RSS (``wait4``) are
recorded:

1. ``simulate``: ``simulate_counts`` writes ``--cells`` x ``--genes`` raw counts (CSR) to
   an ``.h5ad`` under ``--workdir`` (kept between runs; not compared with anything).
2. ``data_processing``: ``kedro run --pipelines data_processing`` in a temporary copy of
   the project whose ``conf/local`` points ``raw_counts`` at that file.
3. ``training``: ``kedro run --pipelines training`` with ``max_epochs: 1`` and one torch
   thread; the counts stay sparse by the default ``training.data`` rule when they would
   not fit its budget. Training throughput is training cells / the fit's wall time (the
   model card's ``wall_time_s``; one thread, so wall is CPU).
4. ``embedding``: ``kedro run --pipelines embedding``: every cell's latent.
5. ``scvi-tools``: in the interpreter of ``--scvi-python``, SCVI on the processed file
   (its ``counts`` layer, the same batch key and train/validation cells), one epoch at the
   same batch size and one thread, then ``get_latent_representation`` of every cell.

``--embedding-only`` times the encoding alone, interleaved: this project's
``model.get_latent`` (the embedding pipeline's call) of every processed cell with the
trained model, against scvi-tools' ``get_latent_representation`` of the same file (an
untrained SCVI of the same architecture: the weights do not change the cost).

Usage::

    .venv/bin/python benchmarks/million_cells.py                      # 1,000,000 cells
    .venv/bin/python benchmarks/million_cells.py --cells 50000 --workdir /tmp/mc-small
    .venv/bin/python benchmarks/million_cells.py --scvi-python ""   # this project only
    .venv/bin/python benchmarks/million_cells.py --embedding-only --rounds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS,
    copy_project,
    machine_facts,
    markdown_table,
    run_measured,
    with_threads,
    write_csv,
)

SCRIPT = Path(__file__).resolve()
STAGES = ("data_processing", "training", "embedding")
BATCH_SIZE = 128


def simulate_worker(out: Path, n_cells: int, n_genes: int, result: Path) -> None:
    from omics_vae.data.simulate import simulate_counts

    started = time.perf_counter()
    adata = simulate_counts(n_cells=n_cells, n_genes=n_genes, seed=0)
    simulated = time.perf_counter() - started
    adata.write_h5ad(out)
    density = adata.X.nnz / (adata.n_obs * adata.n_vars)
    result.write_text(json.dumps({"simulate_s": simulated, "density": density}))


def scvi_tools_worker(data: Path, batch_size: int, result: Path) -> None:
    import anndata as ad
    import numpy as np
    import scvi
    import torch

    torch.set_num_threads(1)
    scvi.settings.seed = 0
    started = time.perf_counter()
    adata = ad.read_h5ad(data)
    split = adata.obs["split"].to_numpy()
    train_idx = np.flatnonzero(split == "train")
    val_idx = np.flatnonzero(split == "val")
    test_idx = np.flatnonzero(split == "test")  # scvi-tools wants every cell placed
    scvi.model.SCVI.setup_anndata(adata, layer="counts", batch_key="batch")
    model = scvi.model.SCVI(adata, n_hidden=128, n_layers=2, n_latent=30, gene_likelihood="nb")
    loaded = time.perf_counter()
    model.train(
        max_epochs=1, batch_size=batch_size, early_stopping=False, accelerator="cpu",
        devices=1, enable_progress_bar=False,
        datasplitter_kwargs={"external_indexing": [train_idx, val_idx, test_idx]},
    )  # fmt: skip
    trained = time.perf_counter()
    latent = model.get_latent_representation(adata, batch_size=1024)
    embedded = time.perf_counter()
    result.write_text(json.dumps({
        "load_s": loaded - started, "fit_s": trained - loaded, "embed_s": embedded - trained,
        "train_cells": len(train_idx), "n_cells": adata.n_obs, "latent_dims": latent.shape[1],
    }))  # fmt: skip


def ours_embed_worker(project: Path, result: Path) -> None:
    import torch
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    torch.set_num_threads(1)
    bootstrap_project(project)
    with KedroSession.create(project_path=project) as session:
        catalog = session.load_context().catalog
        model, adata = catalog.load("model"), catalog.load("model_input")
    _time_encoding(lambda: model.get_latent(adata, batch_size=1024), adata.n_obs, result)


def scvi_embed_worker(data: Path, result: Path) -> None:
    import anndata as ad
    import scvi
    import torch

    torch.set_num_threads(1)
    adata = ad.read_h5ad(data)
    scvi.model.SCVI.setup_anndata(adata, layer="counts", batch_key="batch")
    model = scvi.model.SCVI(adata, n_hidden=128, n_layers=2, n_latent=30, gene_likelihood="nb")
    model.is_trained_ = True  # untrained weights encode at the same cost
    _time_encoding(
        lambda: model.get_latent_representation(adata, batch_size=1024), adata.n_obs, result
    )


def _time_encoding(encode: Any, n_cells: int, result: Path) -> None:
    cpu, wall = time.process_time(), time.perf_counter()
    encode()
    result.write_text(json.dumps({
        "n_cells": n_cells, "encode_wall_s": time.perf_counter() - wall,
        "encode_cpu_s": time.process_time() - cpu,
    }))  # fmt: skip


def _embedding_only(args: argparse.Namespace, project: Path, logs: Path) -> None:
    processed = _latest(project, "data/05_model_input/model_input.h5ad")
    rows = []
    for round_ in range(args.rounds):
        for framework in ("omics_vae", "scvi-tools"):
            result = logs / f"embed_{framework}.json"
            if framework == "omics_vae":
                command = [sys.executable, str(SCRIPT), "--worker", "embed-ours",
                           "--data", str(project), "--result", str(result)]  # fmt: skip
            else:
                command = [args.scvi_python, str(SCRIPT), "--worker", "embed-scvi",
                           "--data", str(processed), "--result", str(result)]  # fmt: skip
            m = run_measured(command, result, logs / f"embed_{framework}.log",
                             env=with_threads(1))  # fmt: skip
            speed = m.report["n_cells"] / m.report["encode_cpu_s"]
            rows.append({"framework": framework, "round": round_ + 1, **m.report,
                         "cells_per_cpu_s": speed})  # fmt: skip
            print(rows[-1], flush=True)
    args.tag = args.tag or "embedding"
    _report(rows, args)


def _configure(project: Path, raw: Path, model: str) -> None:
    local = project / "conf" / "local"
    (local / "catalog.yml").write_text(
        f"raw_counts:\n  type: omics_vae.datasets.H5ADDataset\n  filepath: {raw}\n"
    )
    (local / "parameters.yml").write_text(
        "training:\n"
        f"  model: {model}\n"
        f"  trainer: {{max_epochs: 1, batch_size: {BATCH_SIZE}, num_threads: 1}}\n"
    )


def _latest(project: Path, relative: str) -> Path:
    versions = sorted((project / relative).glob("*/" + Path(relative).name))
    if not versions:
        raise FileNotFoundError(f"no version of {relative} under {project}")
    return versions[-1]


def _kedro(project: Path, stage: str, logs: Path) -> dict[str, Any]:
    kedro = str(Path(sys.executable).with_name("kedro"))
    result = logs / f"{stage}.json"
    m = run_measured(
        [kedro, "run", "--pipelines", stage], result, logs / f"{stage}.log",
        cwd=project, env=with_threads(1),
    )  # fmt: skip
    row = {"stage": stage, "wall_s": m.wall_s, "cpu_s": m.cpu_s}
    row["peak_rss_gib"] = m.peak_rss_mib / 1024
    if stage == "training":
        import yaml

        card = yaml.safe_load(_latest(project, "data/06_models/model_card.yml").read_text())
        fit_s = _find(card.get("training"), "wall_time_s")
        train_cells = _find(card, "n_cells")["train"]
        row.update(fit_s=fit_s, train_cells=train_cells, cells_per_s=train_cells / fit_s)
    return row


def _find(tree: Any, key: str) -> Any:
    """The first value of ``key`` anywhere in a nested mapping."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for value in tree.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.worker:
        _dispatch_worker(args)
        return
    work = args.workdir
    logs = work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if args.embedding_only:
        _embedding_only(args, work / "project", logs)
        return
    raw = work / f"raw_{args.cells}x{args.genes}.h5ad"
    rows = []
    if not raw.exists():
        m = run_measured(
            [sys.executable, str(SCRIPT), "--worker", "simulate", "--out", str(raw),
             "--cells", str(args.cells), "--genes", str(args.genes),
             "--result", str(logs / "simulate.json")],
            logs / "simulate.json", logs / "simulate.log",
        )  # fmt: skip
        rows.append({"stage": "simulate", "wall_s": m.wall_s, "cpu_s": m.cpu_s,
                     "peak_rss_gib": m.peak_rss_mib / 1024, **m.report})  # fmt: skip
        print(rows[-1], flush=True)
    project = copy_project(work / "project")
    _configure(project, raw, args.model)
    for stage in STAGES:
        rows.append({"framework": f"omics_vae:{args.model}", **_kedro(project, stage, logs)})
        print(rows[-1], flush=True)
    if args.scvi_python:
        processed = _latest(project, "data/05_model_input/model_input.h5ad")
        result = logs / "scvi.json"
        m = run_measured(
            [args.scvi_python, str(SCRIPT), "--worker", "scvi", "--data", str(processed),
             "--result", str(result)],
            result, logs / "scvi.log", env=with_threads(1),
        )  # fmt: skip
        report = m.report
        rows.append({
            "framework": "scvi-tools:SCVI", "stage": "load + train 1 epoch + embed",
            "wall_s": m.wall_s, "cpu_s": m.cpu_s, "peak_rss_gib": m.peak_rss_mib / 1024,
            "fit_s": report["fit_s"], "train_cells": report["train_cells"],
            "cells_per_s": report["train_cells"] / report["fit_s"],
            "embed_s": report["embed_s"],
        })  # fmt: skip
        print(rows[-1], flush=True)
    _report(rows, args)


def _report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    rows = [{c: r.get(c, "") for c in columns} for r in rows]
    args.results.mkdir(parents=True, exist_ok=True)
    stem = f"million_cells_{args.cells}{'_' + args.tag if args.tag else ''}"
    write_csv(args.results / f"{stem}.csv", rows)
    facts = machine_facts()
    text = "\n".join(f"- {k}: {v}" for k, v in facts.items()) + "\n\n" + markdown_table(rows)
    (args.results / f"{stem}.md").write_text(text + "\n")
    print("\n" + text)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--genes", type=int, default=2000)
    parser.add_argument("--model", default="invae")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/omics-vae-bench/million"))
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--scvi-python", default="/tmp/bench-scvi/bin/python",
        help="Interpreter with scvi-tools; empty to skip the peer.",
    )  # fmt: skip
    parser.add_argument("--tag", default="", help="Suffix of the result files.")
    parser.add_argument(
        "--embedding-only", action="store_true",
        help="Time encoding alone, on the project copy a full run left in --workdir.",
    )  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="... interleaved rounds.")
    parser.add_argument(
        "--worker", choices=["simulate", "scvi", "embed-ours", "embed-scvi"],
        help=argparse.SUPPRESS,
    )  # fmt: skip
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _dispatch_worker(args: argparse.Namespace) -> None:
    if args.worker == "simulate":
        simulate_worker(args.out, args.cells, args.genes, args.result)
    elif args.worker == "embed-ours":
        ours_embed_worker(args.data, args.result)
    elif args.worker == "embed-scvi":
        scvi_embed_worker(args.data, args.result)
    else:
        scvi_tools_worker(args.data, BATCH_SIZE, args.result)


if __name__ == "__main__":
    main()
