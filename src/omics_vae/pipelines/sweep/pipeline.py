"""Sweep pipelines: data processing once, then every variant in its own namespace.

``kedro run --pipeline sweep`` runs every declared sweep, ``--pipeline sweep_<name>`` one
sweep, and ``--namespaces <variant>`` one variant of it on the processed data already
saved. The variants are expanded from ``sweeps`` in the parameters (omics_vae.sweeps).
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline, pipeline

from omics_vae.pipelines.data_processing.pipeline import create_pipeline as processing
from omics_vae.pipelines.embedding.pipeline import create_pipeline as embedding
from omics_vae.pipelines.evaluation.pipeline import create_pipeline as evaluation
from omics_vae.pipelines.sweep.nodes import compare_variants
from omics_vae.pipelines.training.pipeline import create_pipeline as training
from omics_vae.sweeps import SWEPT_SECTIONS, Variant, expand_sweeps

# What each variant hands to its sweep's comparison.
COMPARED_OUTPUTS = ("scib_results", "training_summary")
COMPARISON_OUTPUTS = ["variant_scores", "sweep_summary", "pairwise_tests", "comparison_figure"]


def create_sweep_pipelines(params: dict[str, Any]) -> dict[str, Pipeline]:
    """One pipeline per declared sweep, keyed ``sweep_<name>``."""
    return {
        f"sweep_{sweep}": processing() + _variants_pipeline(variants) + _comparison(sweep, variants)
        for sweep, variants in expand_sweeps(params).items()
    }


def per_variant_pipeline() -> Pipeline:
    """What each variant runs: training → embedding → evaluation."""
    return training() + embedding() + evaluation()


def _variants_pipeline(variants: list[Variant]) -> Pipeline:
    template = per_variant_pipeline()
    shared_data = {name for name in template.inputs() if not name.startswith("params:")}
    # Project-wide switches (force_retrain) stay global; the swept blocks are namespaced.
    shared_params = {
        name
        for name in template.inputs()
        if name.startswith("params:") and name.split(":", 1)[1].split(".")[0] not in SWEPT_SECTIONS
    }
    return sum(
        (
            pipeline(
                template,
                namespace=variant.name,
                inputs=shared_data,
                parameters=shared_params,
            )
            for variant in variants
        ),
        Pipeline([]),
    )


def _comparison(sweep: str, variants: list[Variant]) -> Pipeline:
    # The node names its inputs without dots; pipeline() maps them to the variants'
    # namespaced datasets and parameters.
    inputs = {"params": "params:sweep_comparison"}
    for variant in variants:
        inputs[f"{variant.name}__sweep"] = f"params:{variant.name}.sweep"
        for name in COMPARED_OUTPUTS:
            inputs[f"{variant.name}__{name}"] = f"{variant.name}.{name}"
    placeholders = {key: key if key == "params" else f"compared__{key}" for key in inputs}
    node = Node(
        compare_variants,
        inputs={key: _as_input(inputs[key], placeholders[key]) for key in inputs},
        outputs=COMPARISON_OUTPUTS,
        name="compare_variants_node",
    )
    mapping = {_as_input(inputs[k], placeholders[k]): inputs[k] for k in inputs}
    return pipeline(
        [node],
        namespace=sweep,
        inputs={p: t for p, t in mapping.items() if not p.startswith("params:")},
        parameters={p: t for p, t in mapping.items() if p.startswith("params:")},
    )


def _as_input(target: str, placeholder: str) -> str:
    return f"params:{placeholder}" if target.startswith("params:") else placeholder
