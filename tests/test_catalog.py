"""The catalog is the single map of the data: every entry is placed in a layer."""

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

LAYERS = {
    "raw",
    "intermediate",
    "primary",
    "feature",
    "model_input",
    "models",
    "model_output",
    "reporting",
}
GENERATED_DATASETS = ("SimulatedCountsDataset", "SimulatedPairedDataset")
CATALOG_FILES = sorted((PROJECT_ROOT / "conf" / "base").glob("catalog*.yml"))


def _entries(path) -> dict:
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", CATALOG_FILES, ids=lambda path: path.name)
def test_every_entry_has_a_known_kedro_viz_layer(path):
    for name, entry in _entries(path).items():
        layer = entry.get("metadata", {}).get("kedro-viz", {}).get("layer")
        assert layer in LAYERS, f"{path.name}: {name} has layer {layer!r}"


@pytest.mark.parametrize("path", CATALOG_FILES, ids=lambda path: path.name)
def test_files_written_by_pipelines_are_versioned(path):
    for name, entry in _entries(path).items():
        # Raw data is the user's file, which no pipeline writes.
        raw = entry.get("metadata", {}).get("kedro-viz", {}).get("layer") == "raw"
        if "filepath" in entry and not entry["type"].endswith(GENERATED_DATASETS) and not raw:
            assert entry.get("versioned") is True, f"{path.name}: {name} is not versioned"


@pytest.mark.parametrize(
    ("family", "single_run_catalog"),
    [("single_cell", "catalog.yml"), ("paired", "catalog_paired.yml")],
)
def test_every_dataset_of_a_sweep_variant_has_a_factory_like_its_single_run_entry(
    family, single_run_catalog
):
    from omics_vae.families import FAMILIES
    from omics_vae.sweep_pipelines import per_variant_pipeline

    single = _entries(PROJECT_ROOT / "conf" / "base" / single_run_catalog)
    factories = _entries(PROJECT_ROOT / "conf" / "base" / "catalog_sweeps.yml")
    template = per_variant_pipeline(FAMILIES[family])
    per_variant = template.all_outputs() | (template.datasets() - template.inputs())
    for name in sorted(per_variant):
        factory = factories.get(f"{{variant}}.{name}")
        assert factory is not None, f"catalog_sweeps.yml has no '{{variant}}.{name}'"
        plain = single[name]
        assert factory["type"] == plain["type"], name
        assert factory["metadata"] == plain["metadata"], name
        if "filepath" in plain:
            file_name = plain["filepath"].rsplit("/", 1)[-1]
            assert factory["filepath"].endswith(f"/sweeps/{{variant}}/{file_name}"), name
