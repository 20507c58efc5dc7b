"""Project settings. https://docs.kedro.org/en/stable/kedro_project_setup/settings.html"""

from kedro.config import OmegaConfigLoader

from omics_vae.hooks import MlflowLineageHooks, ParameterValidationHooks

HOOKS = (ParameterValidationHooks(), MlflowLineageHooks())

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "config_patterns": {
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
    # An environment's parameters file needs only the keys it changes; catalog entries
    # are still replaced whole, so switching a dataset's type leaves no stale arguments.
    "merge_strategy": {"parameters": "soft"},
}
