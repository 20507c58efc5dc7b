"""Data families: one declaration each of what the rest of the project asks about a kind of
data (single-cell counts, paired tables).

A family names its processing pipeline and its per-model stages (training, embedding,
evaluation), the parameter blocks a sweep variant overrides, where its seed and
checkpoint folder sit in those blocks, its catalog names (a prefix and the datasets a
sweep compares) and its training block. The pipeline registry, the sweeps, the config
loader and the hooks read these declarations; none of them branches on a family's name.
A new family is one ``Family`` passed to ``register_family`` (from the module that holds
its pipelines) plus its configuration.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kedro.pipeline import Pipeline
from pydantic import BaseModel

from omics_vae.run_summary import (
    label_transfer_headline,
    paired_headline,
    single_cell_headline,
)
from omics_vae.schemas.data_processing import DataProcessingParams
from omics_vae.schemas.embedding import EmbeddingParams
from omics_vae.schemas.evaluation import EvaluationParams
from omics_vae.schemas.mapping import MappingParams
from omics_vae.schemas.paired import PairedParams
from omics_vae.schemas.paired_training import PairedTrainingParams
from omics_vae.schemas.training import FitParams, TrainingParams

PipelineFactory = Callable[[], Pipeline]


@dataclass(frozen=True)
class Deferred:
    """A function named by ``module:name``, imported when first called.

    Families are read at start-up (the context validates parameters against them); their
    pipelines and scorers import the model and analysis libraries, which only a run that
    uses them should pay for. An instance pickles by its name (ParallelRunner workers).
    """

    target: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    @property
    def __name__(self) -> str:  # what Kedro and kedro-viz name a node's function
        return self.target.partition(":")[2]


def _pipeline(stage: str) -> Deferred:
    """``create_pipeline`` of ``omics_vae.pipelines.<stage>``, imported when called."""
    return Deferred(f"omics_vae.pipelines.{stage}:create_pipeline")


@dataclass(frozen=True)
class Family:
    """What the project needs to know about one kind of data.

    Attributes:
        name: The family's name, as sweeps write it (``family: paired``).
        pipeline: The registry name of the family end to end (``__default__`` for the
            single-cell family, which ``kedro run`` runs).
        processing: Raw data to model input; runs once for all variants of a sweep.
        stages: Per-model stages in order, keyed by their tag (``training`` first).
        sections: The parameter blocks a sweep variant overrides.
        seed: Dotted key of the training seed within those blocks.
        checkpoint_dir: Dotted key of the Lightning checkpoint folder.
        training_section: Dotted key of the training block (for dry runs and plans).
        training_schema: The schema of that block.
        parameters: The schema of each of the family's top-level parameter blocks; the
            project's context validates them once and gives nodes the validated objects.
        prefix: Prefix of the family's catalog names (``paired_model``, ...).
        scores: The evaluation dataset a sweep's comparison reads per variant.
        score_row: Its model's scores in that dataset, ``{metric: value}``.
        training_summary: The training summary dataset a comparison reads per variant.
        headline: One or two lines of the model's scores against its baselines, from
            ``scores``, for the summary a run prints at its end.
        more_headlines: Further summary lines, by the evaluation dataset they read.
        on_demand: Pipelines run only when asked for by name (``kedro run --pipelines
            mapping``): not part of the family end to end, nor of sweeps.
        fixed_prefix: Dotted prefix a variant may not override (it would change the
            processing that all variants share).
    """

    name: str
    pipeline: str
    processing: PipelineFactory
    stages: Mapping[str, PipelineFactory]
    sections: tuple[str, ...]
    seed: str
    checkpoint_dir: str
    training_section: str
    training_schema: type[FitParams]
    parameters: Mapping[str, type[BaseModel]]
    score_row: Callable[[Any], dict[str, float]] = Deferred(
        "omics_vae.evaluation.comparison:single_cell_scores"
    )
    prefix: str = ""
    scores: str = "scib_results"
    training_summary: str = "training_summary"
    headline: Callable[[Any], str] = single_cell_headline
    more_headlines: Mapping[str, Callable[[Any], str]] = field(
        default_factory=lambda: {"label_transfer": label_transfer_headline}
    )
    fixed_prefix: str | None = None
    on_demand: Mapping[str, PipelineFactory] = field(default_factory=dict)

    def stage_names(self) -> dict[str, PipelineFactory]:
        """The processing and each stage's factory, keyed by their registry names."""
        processing = f"{self.prefix}processing" if self.prefix else "data_processing"
        return {
            processing: self.processing,
            **{f"{self.prefix}{tag}": create for tag, create in self.stages.items()},
        }

    def stage_pipelines(self, only: set[str] | None = None) -> dict[str, Pipeline]:
        """The processing and each stage (or those named in ``only``), keyed by their
        registry names."""
        return {
            name: create()
            for name, create in self.stage_names().items()
            if only is None or name in only
        }

    def end_to_end(self) -> Pipeline:
        """Processing, then every stage."""
        return sum(self.stage_pipelines().values(), Pipeline([]))


FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Make ``family`` known to the registry, sweeps and hooks (replacing one of the same
    name)."""
    FAMILIES[family.name] = family
    return family


SINGLE_CELL = register_family(
    Family(
        name="single_cell",
        pipeline="__default__",
        processing=_pipeline("data_processing"),
        stages={
            "training": _pipeline("training"),
            "embedding": _pipeline("embedding"),
            "evaluation": _pipeline("evaluation"),
        },
        sections=("training", "embedding", "evaluation"),
        seed="training.seed",
        checkpoint_dir="training.checkpoint_dir",
        training_section="training",
        training_schema=TrainingParams,
        parameters={
            "data_processing": DataProcessingParams,
            "training": TrainingParams,
            "embedding": EmbeddingParams,
            "evaluation": EvaluationParams,
            "mapping": MappingParams,
        },
        on_demand={"mapping": _pipeline("mapping")},
    )
)

PAIRED = register_family(
    Family(
        name="paired",
        pipeline="paired",
        processing=_pipeline("paired_processing"),
        stages={
            "training": _pipeline("paired_training"),
            "embedding": _pipeline("paired_embedding"),
            "evaluation": _pipeline("paired_evaluation"),
        },
        sections=("paired",),
        seed="paired.training.seed",
        checkpoint_dir="paired.training.checkpoint_dir",
        training_section="paired.training",
        training_schema=PairedTrainingParams,
        parameters={"paired": PairedParams},
        prefix="paired_",
        scores="paired_imputation_summary",
        score_row=Deferred("omics_vae.evaluation.comparison:paired_scores"),
        training_summary="paired_training_summary",
        headline=paired_headline,
        more_headlines={},
        fixed_prefix="paired.processing",
    )
)


def with_default_hyperparameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with each family's training block completed by its models' declared
    hyperparameters (``training_schema.with_default_hyperparameters``), so what a run
    logs, validates and sweeps over are its effective values, while the YAML lists only
    what differs from the declarations."""
    completed = copy.deepcopy(dict(params))
    for family in FAMILIES.values():
        *parents, leaf = family.training_section.split(".")
        node: Any = completed
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(leaf), Mapping):
            node[leaf] = family.training_schema.with_default_hyperparameters(node[leaf])
    return completed


def training_family(section: str) -> Family | None:
    """The family whose training block ``section`` is (also ``<variant>.<block>``)."""
    # Longest first: `paired.training` also ends with `.training`.
    for family in sorted(FAMILIES.values(), key=lambda f: -len(f.training_section)):
        if section == family.training_section or section.endswith(f".{family.training_section}"):
            return family
    return None
