"""Tiny raw-count AnnData objects and parameters for the data-processing node and
pipeline tests: the fixtures of the processing tests (``tests/processing``).

Tests get everything through fixtures (never ``from conftest import``), so they work
under any pytest import mode and beside other folders' conftest modules.
"""

from tests.processing.simulated_counts import (
    filtered,
    make_raw_counts,
    parameters,
    raw_counts,
    validated,
)

__all__ = ["filtered", "make_raw_counts", "parameters", "raw_counts", "validated"]
