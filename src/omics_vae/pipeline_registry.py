"""Project pipelines."""

from kedro.framework.project import pipelines as project_pipelines
from kedro.pipeline import Pipeline

from omics_vae.families import FAMILIES
from omics_vae.sweeps import project_parameters


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines.

    The pipelines are composed from the data families (``omics_vae.families``) rather
    than found with ``find_pipelines``: a family end to end and the sweeps are composed
    from several folders.

    - each family's stages by name: ``data_processing``, ``training``, ``embedding``,
      ``evaluation`` (single-cell); ``paired_processing`` … ``paired_evaluation``;
    - each family end to end under its ``pipeline`` name: ``__default__`` (single-cell,
      what ``kedro run`` runs) and ``paired``;
    - each family's on-demand pipelines, e.g. ``mapping`` (a query onto the trained model);
    - ``sweep``: every sweep declared in the parameters; ``sweep_<name>``: one of them.

    As ``find_pipelines`` does, only the pipelines that ``kedro run --pipelines`` asked
    for are built when it asked for some: building a stage imports its nodes, so
    ``--pipelines data_processing`` imports no torch or Lightning.
    """
    wanted = _requested()
    pipelines: dict[str, Pipeline] = {}
    for family in FAMILIES.values():
        names = family.stage_names()
        if wanted is not None and not wanted & {*names, family.pipeline}:
            continue
        if wanted is None or family.pipeline in wanted:
            stages = family.stage_pipelines()
            pipelines[family.pipeline] = sum(stages.values(), Pipeline([]))
        else:
            stages = family.stage_pipelines(only=wanted)
        pipelines.update(stages)
    for family in FAMILIES.values():
        for name, create in family.on_demand.items():
            if wanted is None or name in wanted:
                pipelines[name] = create()
    if wanted is None or any(name.startswith("sweep") for name in wanted):
        # Imported here: the comparison's statistics import every family's evaluation.
        from omics_vae.sweep_pipelines import create_sweep_pipelines  # noqa: PLC0415

        sweeps = create_sweep_pipelines(project_parameters())
        pipelines["sweep"] = sum(sweeps.values(), Pipeline([]))
        pipelines.update(sweeps)
    return pipelines


def _requested() -> set[str] | None:
    """The pipelines `kedro run --pipelines` asked for; ``None``: build them all."""
    # Kedro's own filter, which find_pipelines reads the same way (set by the run).
    requested = project_pipelines._requested_pipelines
    return None if requested is None or "__default__" in requested else set(requested)
