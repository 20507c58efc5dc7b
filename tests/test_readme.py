"""The README's commands are the ones CI runs."""

import re

from tests.conftest import PROJECT_ROOT


def _bash_blocks(text: str) -> list[str]:
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_readme_holds_install_run_and_test_commands_that_ci_runs():
    readme = (PROJECT_ROOT / "README.md").read_text()
    ci_script = (PROJECT_ROOT / ".ci" / "run").read_text()
    blocks = _bash_blocks(readme)

    assert blocks[:3] == ['pip install -e ".[dev]"', "kedro run", "pytest"]
    ci_lines = [line.strip() for line in ci_script.splitlines()]
    assert blocks[0] in ci_lines
    assert blocks[2] in ci_lines


def test_telemetry_consent_is_committed_as_false():
    assert (PROJECT_ROOT / ".telemetry").read_text().strip() == "consent: false"
