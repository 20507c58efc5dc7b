"""Project pipelines."""

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

# `kedro run` with no --pipeline: the single-cell family, end to end. Other families
# (paired tables) and sweeps are run by name.
DEFAULT_PIPELINES = ("data_processing", "training", "embedding", "evaluation")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    Every folder under ``pipelines/`` is found automatically and registered under its
    name; ``__default__`` is the single-cell family in dependency order (Kedro sorts
    nodes by their inputs and outputs).
    """
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum((pipelines[name] for name in DEFAULT_PIPELINES), Pipeline([]))
    return pipelines
