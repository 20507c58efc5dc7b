"""Sweep pipelines: data processing once, then every variant in its own namespace.

``kedro run --pipeline sweep`` runs every declared sweep, ``--pipeline sweep_<name>`` one
sweep, ``--namespaces <variant>`` one variant of it on the processed data already saved,
and ``--tags training`` (or ``embedding``, ``evaluation``) one stage of every variant.
The variants are expanded from ``sweeps`` in the parameters (omics_vae.sweeps).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kedro.pipeline import Node, Pipeline, pipeline

from omics_vae.pipelines import (
    data_processing,
    embedding,
    evaluation,
    paired_embedding,
    paired_evaluation,
    paired_processing,
    paired_training,
    training,
)
from omics_vae.pipelines.sweep.nodes import compare_variants
from omics_vae.sweeps import FAMILIES, Variant, expand_sweeps

COMPARISON_OUTPUTS = ["variant_scores", "sweep_summary", "pairwise_tests", "comparison_figure"]


@dataclass(frozen=True)
class FamilyPipelines:
    """How a model family's sweep is built: processing once, stages per variant, and the
    per-variant datasets its comparison reads (evaluation scores, training summary)."""

    processing: Callable[[], Pipeline]
    stages: dict[str, Callable[[], Pipeline]]
    scores: str
    training_summary: str


FAMILY_PIPELINES = {
    "single_cell": FamilyPipelines(
        processing=data_processing.create_pipeline,
        stages={
            "training": training.create_pipeline,
            "embedding": embedding.create_pipeline,
            "evaluation": evaluation.create_pipeline,
        },
        scores="scib_results",
        training_summary="training_summary",
    ),
    "paired": FamilyPipelines(
        processing=paired_processing.create_pipeline,
        stages={
            "training": paired_training.create_pipeline,
            "embedding": paired_embedding.create_pipeline,
            "evaluation": paired_evaluation.create_pipeline,
        },
        scores="paired_imputation_summary",
        training_summary="paired_training_summary",
    ),
}


def create_sweep_pipelines(params: dict[str, Any]) -> dict[str, Pipeline]:
    """One pipeline per declared sweep, keyed ``sweep_<name>``."""
    pipelines = {}
    for sweep, variants in expand_sweeps(params).items():
        family = variants[0].family
        pipelines[f"sweep_{sweep}"] = (
            FAMILY_PIPELINES[family].processing()
            + _variants_pipeline(family, variants)
            + _comparison(family, sweep, variants)
        )
    return pipelines


def per_variant_pipeline(family: str = "single_cell") -> Pipeline:
    """What each variant of a family runs, each stage tagged with its name."""
    stages = FAMILY_PIPELINES[family].stages
    return sum(
        (pipeline(create(), tags=tag) for tag, create in stages.items()),
        Pipeline([]),
    )


def _variants_pipeline(family: str, variants: list[Variant]) -> Pipeline:
    template = per_variant_pipeline(family)
    sections = FAMILIES[family].sections
    shared_data = {name for name in template.inputs() if not name.startswith("params:")}
    # Project-wide switches (force_retrain) stay global; the swept blocks are namespaced.
    shared_params = {
        name
        for name in template.inputs()
        if name.startswith("params:") and name.split(":", 1)[1].split(".")[0] not in sections
    }
    return sum(
        (
            pipeline(template, namespace=variant.name, inputs=shared_data, parameters=shared_params)
            for variant in variants
        ),
        Pipeline([]),
    )


def _comparison(family: str, sweep: str, variants: list[Variant]) -> Pipeline:
    # The node names its inputs without dots; pipeline() maps them to the variants'
    # namespaced datasets and parameters.
    outputs = FAMILY_PIPELINES[family]
    targets = {"params": "params:sweep_comparison"}
    for variant in variants:
        targets[f"{variant.name}__sweep"] = f"params:{variant.name}.sweep"
        targets[f"{variant.name}__scores"] = f"{variant.name}.{outputs.scores}"
        targets[f"{variant.name}__training_summary"] = f"{variant.name}.{outputs.training_summary}"
    placeholders = {
        key: f"params:compared__{key}" if target.startswith("params:") else f"compared__{key}"
        for key, target in targets.items()
    }
    node = Node(
        compare_variants,
        inputs=placeholders,
        outputs=COMPARISON_OUTPUTS,
        name="compare_variants_node",
        tags="comparison",
    )
    mapping = {placeholders[key]: target for key, target in targets.items()}
    return pipeline(
        [node],
        namespace=sweep,
        inputs={p: t for p, t in mapping.items() if not p.startswith("params:")},
        parameters={p: t for p, t in mapping.items() if p.startswith("params:")},
    )
