"""Project commands of the ``kedro`` CLI (Kedro loads ``<package>.cli.cli``).

``kedro run`` is Kedro's own command with one change: an error the project raises on
purpose (``omics_vae.errors.ProjectError``: a misspelt parameter, counts that are not
counts, a stopped training) is printed as its message alone, with the file its full
traceback was written to; any other error keeps Kedro's traceback. ``python -m
omics_vae`` and the ``omics-vae`` script take the run command from here too.

``kedro training-plan`` validates ``training`` (phases included) in an environment and
prints the plan without reading data or training.
"""

from __future__ import annotations

import atexit
import datetime
import functools
import gc
import os
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run

# The parser behind `kedro run --params`, so both commands read overrides the same way.
from kedro.framework.cli.utils import _split_params, env_option
from kedro.framework.project import settings
from kedro.framework.startup import bootstrap_project

from omics_vae.errors import ProjectError

# Where a refusal's traceback goes, under the project (git-ignored).
TRACEBACK_FOLDER = Path("logs") / "tracebacks"


def _exit_without_collecting_garbage() -> None:
    # Registered when the CLI loads, so it runs after every other exit handler (MLflow's
    # included). The interpreter's own teardown then frees objects by reference count
    # only: its cyclic collections over the objects of Kedro, MLflow and scanpy took
    # 1.5-2 s of every `kedro run --pipelines data_processing` (docs/benchmarks.md §1),
    # and the memory goes back to the system with the process either way.
    gc.freeze()
    gc.disable()


atexit.register(_exit_without_collecting_garbage)


def project_error(error: BaseException) -> ProjectError | None:
    """The ``ProjectError`` that ``error`` is or was raised from, if any (Kedro and the
    runners may wrap it)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ProjectError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _write_traceback(error: BaseException) -> Path:
    """The full traceback of ``error`` in a new file; under the project when it can be."""
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H.%M.%S.%fZ")
    text = "".join(traceback.format_exception(error))
    try:
        TRACEBACK_FOLDER.mkdir(parents=True, exist_ok=True)
        path = TRACEBACK_FOLDER / f"{stamp}.txt"
        path.write_text(text)
    except OSError:
        handle, name = tempfile.mkstemp(prefix=f"omics-vae-{stamp}-", suffix=".txt")
        with os.fdopen(handle, "w") as file:
            file.write(text)
        path = Path(name)
    return path


def refusing_cleanly(command: Callable[..., Any]) -> Callable[..., Any]:
    """``command`` printing a ``ProjectError`` as its message (and exiting with its
    ``exit_code``) instead of a traceback; other errors pass through unchanged."""

    @functools.wraps(command)
    def run_command(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except Exception as error:
            refusal = project_error(error)
            if refusal is None:
                raise
            where = _write_traceback(error)
            click.secho(f"\nError: {refusal}", err=True, fg="red")
            click.echo(f"(The full traceback is in {where}.)", err=True)
            raise SystemExit(refusal.exit_code) from None

    return run_command


@click.group(name="omics_vae")
def cli() -> None:
    """Commands of the omics-vae project."""


run = click.Command(
    name=kedro_run.name,
    params=kedro_run.params,
    callback=refusing_cleanly(kedro_run.callback),
    help=kedro_run.help,
    short_help=kedro_run.short_help,
    context_settings=kedro_run.context_settings,
)
cli.add_command(run)


@cli.command("training-plan")
@env_option
@click.option(
    "--params", default="", callback=_split_params, help="key=value overrides, as for kedro run."
)
@refusing_cleanly
def training_plan(env: str | None, params: dict) -> None:
    """Validate the training parameters and print the phases; nothing is trained."""
    # Imported here: the schemas import the models (torch), which no other command needs.
    from omics_vae.params import validate_section  # noqa: PLC0415
    from omics_vae.schemas.training import TrainingParams, plan_table  # noqa: PLC0415

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
