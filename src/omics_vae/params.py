"""Validation of the parameters in ``conf/<env>/parameters_*.yml``.

Each top-level parameter block has a pydantic schema. The project's Kedro context
(``omics_vae.context``) checks them all once, as soon as it exists, so a typo or a wrong
type fails in the first second with the dotted key, not after an hour of training.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class StrictModel(BaseModel):
    """Base for parameter schemas: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class InvalidParametersError(ValueError):
    """Raised when a parameter block does not match its schema."""


def format_validation_error(section: str, error: ValidationError) -> str:
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in (section, *problem["loc"]))
        given = problem.get("input")
        # A whole block as "input" (errors of cross-field checks) says nothing useful.
        shown = (
            "" if problem["type"] == "missing" or isinstance(given, dict) else f" (got {given!r})"
        )
        lines.append(f"  - {key}: {problem['msg']}{shown}")
    return (
        f"Invalid parameters under '{section}' (conf/<env>/parameters_{section}.yml or "
        "--params):\n" + "\n".join(lines) + "\nFix these keys and run again."
    )


def validate_section(section: str, schema: type[BaseModel], values: Any) -> BaseModel:
    """Validate one parameter block, raising an error that names every bad key."""
    if isinstance(values, BaseModel):
        return values
    try:
        return schema.model_validate(values)
    except ValidationError as error:
        raise InvalidParametersError(format_validation_error(section, error)) from None
