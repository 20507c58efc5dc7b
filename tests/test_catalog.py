"""The catalog is the single map of the data: every entry is placed in a layer."""

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


def _catalog() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "catalog.yml").read_text())


def test_every_entry_has_a_known_kedro_viz_layer():
    for name, entry in _catalog().items():
        layer = entry.get("metadata", {}).get("kedro-viz", {}).get("layer")
        assert layer in LAYERS, f"{name} has layer {layer!r}"


def test_files_written_by_pipelines_are_versioned():
    for name, entry in _catalog().items():
        if "filepath" in entry and entry["type"] != "omics_vae.datasets.SimulatedCountsDataset":
            assert entry.get("versioned") is True, f"{name} is not versioned"
