"""The documentation site builds strictly, and its commands are ones the tests run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from omics_vae.context import parameter_schemas
from tests.conftest import PROJECT_ROOT
from tests.test_labelling_end_to_end import COPY_SUGGESTIONS

DOCS = PROJECT_ROOT / "docs"
# Pages other engineers write (their commands are theirs to test).
INCLUDED_AS_IS = ("architecture.md", "benchmarks.md")

# Every command a page shows in a ```bash block, and where the suite runs it.
EXERCISED_COMMANDS = {
    'pip install -e ".[dev]"': ".ci/run",
    "pytest": ".ci/run",
    "kedro run": "tests/short_run.py (and tests/test_end_to_end.py)",
    "kedro run --pipelines training": "tests/test_end_to_end.py, tests/short_run.py",
    "kedro jupyter lab": "tests/test_notebooks.py",
    "kedro run --pipelines paired": "tests/test_paired_end_to_end.py",
    "kedro run --pipelines mapping": "tests/test_mapping_end_to_end.py",
    COPY_SUGGESTIONS: "tests/test_labelling_end_to_end.py",
    "kedro run --pipelines sweep_<name>": (
        "tests/test_sweep_end_to_end.py (sweep_size, sweep_joint; each with --params)"
    ),
    "kedro run --pipelines sweep_<name> --tags training": (
        "tests/short_run.py (sweep_compare); tests/test_sweep_end_to_end.py re-runs it as "
        "a Kedro session"
    ),
    "kedro run --pipelines sweep_<name> --runner ParallelRunner": (
        "tests/test_sweep_end_to_end.py::"
        "test_parallel_runner_runs_the_variants_in_processes_with_the_sequential_results"
    ),
    "kedro training-plan --env three_phase": (
        "tests/test_end_to_end.py::test_the_shipped_three_phase_recipe_trains_on_pbmc_and_tracks_each_phase"
    ),
    "kedro run --env three_phase": (
        "tests/test_end_to_end.py::test_the_shipped_three_phase_recipe_trains_on_pbmc_and_tracks_each_phase"
    ),
    "kedro run --pipelines embedding --params embedding.model_uri=models:/invae@champion": (
        "tests/test_runs.py::test_kedro_embeds_with_the_registered_champion"
    ),
}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    site_dir = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-6000:]}"
    return site_dir


def _text(html_file: Path) -> str:
    return re.sub(r"<[^>]+>", " ", html_file.read_text())


def test_the_site_builds_strictly_with_every_page_in_the_nav(site):
    config = yaml.safe_load((PROJECT_ROOT / "mkdocs.yml").read_text())
    in_nav = set(re.findall(r"[\w/-]+\.md", yaml.safe_dump(config["nav"])))
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "_hooks" not in p.parts}
    assert pages | {"reference/configuration.md"} == in_nav
    for page in in_nav:
        assert (site / page.removesuffix(".md").removesuffix("index") / "index.html").exists()


def test_the_configuration_reference_lists_every_parameter(site):
    reference = _text(site / "reference" / "configuration" / "index.html")
    for section, schema in parameter_schemas().items():
        for field in schema.model_fields:
            assert f"{section}.{field}" in reference, f"{section}.{field} is not documented"
    assert "training.hyperparameters.invae.n_latent_bio" in reference
    assert "training.hyperparameters.scvi_vae.n_latent" in reference
    # The paired model's, under its own block, with the defaults its declaration gives.
    assert "paired.training.hyperparameters.input_noise" in reference
    assert "training.hyperparameters.joint_vae" not in reference


def test_the_api_reference_documents_runs_models_and_datasets(site):
    api = _text(site / "reference" / "api" / "index.html")
    for name in ("find_models", "register_model", "load_model", "InVAE", "H5ADDataset"):
        assert name in api


def test_architecture_and_benchmarks_are_included_as_they_are(site):
    for page in INCLUDED_AS_IS:
        first_heading = (DOCS / page).read_text().splitlines()[0].lstrip("# ").strip()
        built = _text(site / page.removesuffix(".md") / "index.html")
        assert first_heading in built


def test_every_command_on_a_page_is_one_the_tests_run():
    shown = set()
    for page in DOCS.rglob("*.md"):
        if page.name in INCLUDED_AS_IS:
            continue
        for block in re.findall(r"```bash\n(.*?)```", page.read_text(), flags=re.S):
            shown.update(line.strip() for line in block.splitlines() if line.strip())
    untested = shown - set(EXERCISED_COMMANDS)
    assert not untested, f"commands no test runs (add a test, or show them as text): {untested}"


DEPRECATED_PIPELINE_OPTION = re.compile("--pipeline" + r"(?![s\w])")  # not matching itself


def test_no_page_message_or_notebook_uses_the_deprecated_pipeline_option():
    """Kedro 1.7 warns on every use of the singular option; `--pipelines` also takes a
    comma list."""
    written = [PROJECT_ROOT / "README.md", *DOCS.rglob("*.md")]
    for folder in ("src", "conf", "notebooks", "benchmarks"):
        written += [
            path
            for path in (PROJECT_ROOT / folder).rglob("*")
            if path.suffix in {".py", ".yml", ".ipynb", ".md"} and "egg-info" not in str(path)
        ]
    offenders = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}"
        for path in written
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if DEPRECATED_PIPELINE_OPTION.search(line)
    ]
    assert len(written) > 20, "the scan found too few files to mean anything"
    assert offenders == [], f"write --pipelines instead of the singular option in: {offenders}"
