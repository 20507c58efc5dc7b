"""Fixtures of the processing tests: tiny simulated raw counts, the parameters, and the
output of each step on them (defined in ``simulated_counts``)."""

from tests.processing.simulated_counts import (
    annotated,
    filtered,
    make_raw_counts,
    normalised,
    parameters,
    raw_counts,
    simulation,
    validated,
)

__all__ = [
    "annotated",
    "filtered",
    "make_raw_counts",
    "normalised",
    "parameters",
    "raw_counts",
    "simulation",
    "validated",
]
