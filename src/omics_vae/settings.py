"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from omics_vae.third_party_warnings import quiet_third_party_warnings

# Before the imports below: importing MLflow raises one of them.
quiet_third_party_warnings()

from omics_vae.context import ProjectContext  # noqa: E402
from omics_vae.hooks import (  # noqa: E402
    DryRunHooks,
    ExperimentDescriptionHooks,
    MlflowLineageHooks,
    ParallelRunnerHooks,
    ParameterValidationHooks,
    ProjectMlflowHook,
    RegisteredModelHooks,
    RunIntegrityHooks,
    RunSummaryHooks,
    SweepRunHooks,
)
from omics_vae.sweeps import SweepConfigLoader  # noqa: E402

# Pluggy calls the last registered first: SweepRunHooks remembers the config loader before
# validation loads the pipelines, and ends a variant's run after MlflowLineageHooks has
# logged the node's last file into it; ExperimentDescriptionHooks tags the run that
# ProjectMlflowHook has just started before a sweep's child runs copy its tags.
HOOKS = (
    RunSummaryHooks(),
    ParameterValidationHooks(),
    DryRunHooks(),
    RunIntegrityHooks(),
    ParallelRunnerHooks(),
    SweepRunHooks(),
    MlflowLineageHooks(),
    RegisteredModelHooks(),
    ExperimentDescriptionHooks(),
    ProjectMlflowHook(),
)
# kedro-mlflow's hook is registered above, as ProjectMlflowHook, which logs the
# validated parameter objects nodes receive under their usual keys and ends an
# interrupted run as KILLED.
# Kedro matches the distribution's name as its metadata writes it (kedro_mlflow).
DISABLE_HOOKS_FOR_PLUGINS = ("kedro_mlflow", "kedro-mlflow")

# Every parameter block validated once, when the context is created (omics_vae.context).
CONTEXT_CLASS = ProjectContext

# OmegaConfigLoader that also adds each sweep variant's parameter blocks (omics_vae.sweeps).
CONFIG_LOADER_CLASS = SweepConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**"],
        "experiment": ["experiment*", "experiment*/**"],
    },
    # An environment's parameters file needs only the keys it changes; catalog entries
    # are still replaced whole, so switching a dataset's type leaves no stale arguments.
    "merge_strategy": {"parameters": "soft"},
}
