"""The project's Kedro context: every parameter block validated once, when the context is
created, and served to nodes as its validated object.

Kedro puts each entry of ``context.params`` into the catalog as ``params:<key>`` (and
the fields of a pydantic object as ``params:<key>.<field>``), so a node that declares
``params:training`` receives a ``TrainingParams``, not a dictionary it would validate
again. The schemas come from the data families (``Family.parameters``) plus the
project-wide blocks below; a sweep variant's blocks are validated against its family's
schemas after the project's own blocks, so an error in a project block is reported
against that block, never against a variant derived from it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from kedro.framework.context import KedroContext
from pydantic import BaseModel

from omics_vae.families import FAMILIES
from omics_vae.params import InvalidParametersError, validate_section
from omics_vae.schemas.sweep import SweepComparisonParams
from omics_vae.sweeps import SWEEPS_FILE, SWEEPS_KEY, SweepError

# Blocks that belong to no family. ``sweeps`` is validated when the config loader
# expands it; ``force_retrain`` is a plain switch.
PROJECT_SCHEMAS: dict[str, type[BaseModel]] = {"sweep_comparison": SweepComparisonParams}
PROJECT_SWITCHES = {"force_retrain": bool, SWEEPS_KEY: dict}
SWEEP_BLOCK = "sweep"


class ProjectContext(KedroContext):
    """Kedro's context whose ``params`` are the validated parameters."""

    @property
    def params(self) -> dict[str, Any]:
        cached = getattr(self, "_project_params", None)
        if cached is None:
            cached = validated_parameters(self.config_loader["parameters"])
            self._project_params = cached
        return cached

    def _get_parameters(self) -> dict[str, Any]:
        # Kedro adds a catalog entry per field of every block, recursively: 27 sweep
        # variants made ~2,900 entries and ~0.5 s of every run's catalog. A variant's
        # pipelines read blocks (``params:<variant>.training``,
        # ``params:<variant>.paired.training``), never a single field, so below a
        # variant only blocks are kept.
        variants = {name for name, block in self.params.items() if _is_variant(block)}
        return {
            name: value
            for name, value in super()._get_parameters().items()
            if _is_block(value) or name.removeprefix("params:").split(".")[0] not in variants
        }


def parameter_schemas() -> dict[str, type[BaseModel]]:
    """The schema of every top-level block: the project's and each family's."""
    schemas = dict(PROJECT_SCHEMAS)
    for family in FAMILIES.values():
        schemas.update(family.parameters)
    return schemas


def validated_parameters(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` with each known block replaced by its validated object.

    Raises:
        InvalidParametersError: An unknown top-level block (a misspelt key would
            otherwise be ignored), a switch of the wrong type, or a block that does not
            match its schema; the message names the key and the file.
    """
    schemas = parameter_schemas()
    variants = [name for name, block in raw.items() if _is_variant(block)]
    _refuse_unknown_blocks(raw, schemas, variants)
    params = dict(raw)
    for key, kind in PROJECT_SWITCHES.items():
        if key in raw and raw[key] is not None and not isinstance(raw[key], kind):
            raise InvalidParametersError(
                f"Invalid parameters: '{key}' must be a {kind.__name__}, got {raw[key]!r}. "
                f"Set it in conf/local/parameters.yml or with --params {key}=..."
            )
    for section, schema in schemas.items():
        if section in raw:
            params[section] = validate_section(section, schema, raw[section])
    for variant in variants:
        params[variant] = _validated_variant(variant, raw[variant])
    return params


def _is_block(value: Any) -> bool:
    return isinstance(value, BaseModel | Mapping)


def _is_variant(block: Any) -> bool:
    return isinstance(block, Mapping) and isinstance(block.get(SWEEP_BLOCK), Mapping)


def _refuse_unknown_blocks(
    raw: Mapping[str, Any], schemas: Mapping[str, Any], variants: list[str]
) -> None:
    known = set(schemas) | set(PROJECT_SWITCHES)
    for family in FAMILIES.values():
        known.update(section.split(".")[0] for section in family.sections)
    unknown = sorted(set(raw) - known - set(variants))
    if not unknown:
        return
    lines = []
    for key in unknown:
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        lines.append(f"  - '{key}' is not a parameter block of this project.{hint}")
    raise InvalidParametersError(
        "Unknown parameter blocks (conf/<env>/parameters*.yml or --params):\n"
        + "\n".join(lines)
        + f"\nThe blocks are: {', '.join(sorted(known))}. Rename the key (your own "
        "settings belong in conf/local/) and run again."
    )


def _validated_variant(variant: str, block: Mapping[str, Any]) -> dict[str, Any]:
    sweep = block[SWEEP_BLOCK]
    family = FAMILIES[sweep["family"]]
    validated = dict(block)
    for section, schema in family.parameters.items():
        if section not in block:
            continue
        try:
            validated[section] = validate_section(f"{variant}.{section}", schema, block[section])
        except InvalidParametersError as error:
            raise SweepError(
                f"Variant '{variant}' of sweep '{sweep['name']}' has invalid parameters: "
                f"its overrides {sweep['overrides']} ({SWEEPS_FILE}) give\n{error}"
            ) from None
    return validated
