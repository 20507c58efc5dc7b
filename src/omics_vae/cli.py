"""Project commands of the ``kedro`` CLI (Kedro loads ``<package>.cli.cli``).

``kedro training-plan`` validates ``training`` (phases included) in an environment and
prints the plan without reading data or training. ``run`` is Kedro's own, re-exported
because ``python -m omics_vae`` takes the run command from this module when it exists.
"""

from __future__ import annotations

from pathlib import Path

import click
from kedro.framework.cli.project import run  # noqa: F401  (see the module docstring)

# The parser behind `kedro run --params`, so both commands read overrides the same way.
from kedro.framework.cli.utils import _split_params, env_option
from kedro.framework.project import settings
from kedro.framework.startup import bootstrap_project

from omics_vae.params import validate_section
from omics_vae.schemas.training import TrainingParams, plan_table


@click.group(name="omics_vae")
def cli() -> None:
    """Commands of the omics-vae project."""


@cli.command("training-plan")
@env_option
@click.option(
    "--params", default="", callback=_split_params, help="key=value overrides, as for kedro run."
)
def training_plan(env: str | None, params: dict) -> None:
    """Validate the training parameters and print the phases; nothing is trained."""
    project_path = Path.cwd()
    bootstrap_project(project_path)
    # The configuration loader alone: no session, hooks or pipelines are needed to read
    # parameters, so the command answers in a second even when a pipeline is broken.
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(project_path / settings.CONF_SOURCE),
        env=env,
        runtime_params=params or None,
        **settings.CONFIG_LOADER_ARGS,
    )
    config = validate_section("training", TrainingParams, loader["parameters"]["training"])
    click.echo(plan_table(config))
