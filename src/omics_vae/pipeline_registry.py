"""Project pipelines."""

from kedro.pipeline import Pipeline

from omics_vae.pipelines import (
    data_processing,
    embedding,
    evaluation,
    paired,
    paired_embedding,
    paired_evaluation,
    paired_processing,
    paired_training,
    training,
)
from omics_vae.pipelines.sweep.pipeline import create_sweep_pipelines
from omics_vae.sweeps import project_parameters

# `kedro run` with no --pipeline: the single-cell family, end to end.
SINGLE_CELL = {
    "data_processing": data_processing,
    "training": training,
    "embedding": embedding,
    "evaluation": evaluation,
}
# Two tables of the same samples on two platforms: `kedro run --pipeline paired`, or a stage.
PAIRED = {
    "paired": paired,
    "paired_processing": paired_processing,
    "paired_training": paired_training,
    "paired_embedding": paired_embedding,
    "paired_evaluation": paired_evaluation,
}


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    The pipelines are listed here rather than found with ``find_pipelines``: Kedro 1.7's
    ``find_pipelines`` loads only the folder named by ``--pipeline``, while
    ``__default__`` and the sweeps are composed from several folders.

    - ``data_processing``, ``training``, ``embedding``, ``evaluation``: the single-cell
      family; ``__default__`` runs them in dependency order.
    - ``paired`` and its stages ``paired_processing`` … ``paired_evaluation``.
    - ``sweep``: every sweep declared in the parameters; ``sweep_<name>``: one of them.
    """
    pipelines = {name: module.create_pipeline() for name, module in SINGLE_CELL.items()}
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    pipelines.update({name: module.create_pipeline() for name, module in PAIRED.items()})
    sweeps = create_sweep_pipelines(project_parameters())
    pipelines["sweep"] = sum(sweeps.values(), Pipeline([]))
    pipelines.update(sweeps)
    return pipelines
