"""Sweep pipelines: a family's data processing once, then every variant in its own
namespace, then the comparison.

``kedro run --pipelines sweep`` runs every declared sweep, ``--pipelines sweep_<name>`` one
sweep, ``--namespaces <variant>`` one variant of it on the processed data already saved,
and ``--tags training`` (or ``embedding``, ``evaluation``) one stage of every variant.
The variants are expanded from ``sweeps`` in the parameters (``omics_vae.sweeps``); what
each family runs comes from its declaration (``omics_vae.families``).
"""

from __future__ import annotations

from typing import Any

from kedro.pipeline import Node, Pipeline, pipeline

from omics_vae.families import FAMILIES, Family
from omics_vae.pipelines.sweep.nodes import compare_variants
from omics_vae.sweeps import Variant, expand_sweeps

COMPARISON_OUTPUTS = ["variant_scores", "sweep_summary", "pairwise_tests", "comparison_figure"]
# Each variant's model scores, {metric: value}, as its family reads them from its evaluation.
COMPARED_SCORES = "compared_scores"


def create_sweep_pipelines(params: dict[str, Any]) -> dict[str, Pipeline]:
    """One pipeline per declared sweep, keyed ``sweep_<name>``."""
    pipelines = {}
    for sweep, variants in expand_sweeps(params).items():
        family = FAMILIES[variants[0].family]
        pipelines[f"sweep_{sweep}"] = (
            family.processing()
            + _variants_pipeline(family, variants)
            + _comparison(family, sweep, variants)
        )
    return pipelines


def per_variant_pipeline(family: Family) -> Pipeline:
    """What each variant of a family runs, each stage tagged with its name."""
    return sum(
        (pipeline(create(), tags=tag) for tag, create in family.stages.items()),
        Pipeline([]),
    )


def _variants_pipeline(family: Family, variants: list[Variant]) -> Pipeline:
    template = per_variant_pipeline(family)
    sections = family.sections
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


def _comparison(family: Family, sweep: str, variants: list[Variant]) -> Pipeline:
    # The node names its inputs without dots; pipeline() maps them to the variants'
    # namespaced datasets and parameters.
    outputs = family
    targets = {"params": "params:sweep_comparison"}
    for variant in variants:
        targets[f"{variant.name}__sweep"] = f"params:{variant.name}.sweep"
        targets[f"{variant.name}__scores"] = f"{variant.name}.{COMPARED_SCORES}"
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
    return _score_rows(family, variants) + pipeline(
        [node],
        namespace=sweep,
        inputs={p: t for p, t in mapping.items() if not p.startswith("params:")},
        parameters={p: t for p, t in mapping.items() if p.startswith("params:")},
    )


def _score_rows(family: Family, variants: list[Variant]) -> Pipeline:
    """Per variant, its model's scores as the family reads them from its evaluation."""
    node = Node(
        family.score_row,
        inputs=family.scores,
        outputs=COMPARED_SCORES,
        name="score_row_node",
        tags="comparison",
    )
    return sum(
        (pipeline([node], namespace=variant.name) for variant in variants),
        Pipeline([]),
    )
