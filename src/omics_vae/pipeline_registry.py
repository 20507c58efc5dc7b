"""Project pipelines."""

from kedro.pipeline import Pipeline

from omics_vae.families import FAMILIES
from omics_vae.sweep_pipelines import create_sweep_pipelines
from omics_vae.sweeps import project_parameters


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    The pipelines are composed from the data families (``omics_vae.families``) rather
    than found with ``find_pipelines``: Kedro 1.7's ``find_pipelines`` loads only the
    folder named by ``--pipelines``, while a family end to end and the sweeps are composed
    from several folders.

    - each family's stages by name: ``data_processing``, ``training``, ``embedding``,
      ``evaluation`` (single-cell); ``paired_processing`` … ``paired_evaluation``;
    - each family end to end under its ``pipeline`` name: ``__default__`` (single-cell,
      what ``kedro run`` runs) and ``paired``;
    - ``sweep``: every sweep declared in the parameters; ``sweep_<name>``: one of them.
    """
    pipelines: dict[str, Pipeline] = {}
    for family in FAMILIES.values():
        stages = family.stage_pipelines()
        pipelines.update(stages)
        pipelines[family.pipeline] = sum(stages.values(), Pipeline([]))
    sweeps = create_sweep_pipelines(project_parameters())
    pipelines["sweep"] = sum(sweeps.values(), Pipeline([]))
    pipelines.update(sweeps)
    return pipelines
