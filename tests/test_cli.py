"""The project's command line: refusals print their message, bugs keep their traceback."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from kedro.io.core import DatasetError

from omics_vae import cli
from omics_vae.models.interruption import TrainingInterrupted
from omics_vae.params import InvalidParametersError


def _command_raising(error: BaseException) -> click.Command:
    @click.command()
    @cli.refusing_cleanly
    def command() -> None:
        raise error

    return command


def _wrapped(refusal: Exception) -> DatasetError:
    """As Kedro passes on an error raised while loading a dataset."""
    try:
        raise refusal
    except Exception as cause:
        try:
            raise DatasetError("Failed while loading data from dataset raw_counts") from cause
        except DatasetError as wrapper:
            return wrapper


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_a_refusal_prints_its_message_and_where_its_traceback_went(in_tmp):
    message = "'trainng' is not a parameter block of this project. Did you mean 'training'?"
    result = CliRunner().invoke(_command_raising(_wrapped(InvalidParametersError(message))))

    assert result.exit_code == 1
    assert f"Error: {message}" in result.output
    assert "Traceback" not in result.output
    written = list((in_tmp / cli.TRACEBACK_FOLDER).glob("*.txt"))
    assert len(written) == 1
    assert str(written[0].relative_to(in_tmp)) in result.output
    text = written[0].read_text()
    assert "Traceback" in text
    assert "InvalidParametersError" in text
    assert "DatasetError" in text  # the whole chain, as Python prints it


def test_a_stopped_training_exits_as_a_shell_reports_the_signal(in_tmp):
    stopped = TrainingInterrupted("Stopped by SIGTERM; resume_from=last.", signal_name="SIGTERM")
    result = CliRunner().invoke(_command_raising(stopped))

    assert result.exit_code == 143
    assert "Error: Stopped by SIGTERM" in result.output


def test_a_bug_keeps_its_traceback(in_tmp):
    result = CliRunner().invoke(_command_raising(ZeroDivisionError("division by zero")))

    assert isinstance(result.exception, ZeroDivisionError)
    assert not (in_tmp / cli.TRACEBACK_FOLDER).exists()


def test_every_error_the_project_raises_on_purpose_is_a_project_error():
    """The library's own error classes, by module: a new one must opt in."""
    import omics_vae

    source = Path(omics_vae.__file__).parent
    declared = {
        line.split("(")[0].removeprefix("class ")
        for path in source.rglob("*.py")
        for line in path.read_text().splitlines()
        if line.startswith("class ") and line.split("(")[0].endswith(("Error", "Interrupted"))
    }
    not_marked = {
        name
        for path in source.rglob("*.py")
        for line in path.read_text().splitlines()
        for name in declared
        if line.startswith(f"class {name}(") and "ProjectError" not in line
    }
    assert len(declared) > 10
    assert not_marked == set(), f"derive these from omics_vae.errors.ProjectError: {not_marked}"


def test_the_run_command_is_kedros_with_its_options():
    from kedro.framework.cli.project import run as kedro_run

    assert [p.name for p in cli.run.params] == [p.name for p in kedro_run.params]
    assert cli.run.callback is not kedro_run.callback


def test_starting_a_command_imports_no_model_or_analysis_library():
    """What every `kedro` command imports before it can refuse a parameter: the settings
    (hooks, context, families, schemas). Torch, Lightning, scanpy and scikit-learn take
    seconds to import and come only with the pipelines that use them."""
    import subprocess
    import sys

    heavy = ("torch", "lightning", "scanpy", "sklearn", "anndata")
    script = (
        "import sys, omics_vae.settings, omics_vae.context, omics_vae.schemas.paired; "
        f"print(sorted(set({heavy!r}) & set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )

    assert result.stdout.strip().splitlines()[-1] == "[]"
