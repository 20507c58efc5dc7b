"""Sweeps: many variants and seeds of one model run on one processed dataset.

``conf/base/parameters_sweeps.yml`` declares sweeps under the ``sweeps`` key. A sweep's
variants are its named variants plus every combination of its grid, each run with every
seed. Each expanded variant becomes a Kedro namespace: its parameter blocks (``training``,
``embedding`` and ``evaluation`` for single-cell models, ``paired`` for the joint VAE)
are the project's own blocks with the variant's overrides applied, and sit under the
variant's name in the parameters (the config loader adds them, see
:class:`SweepConfigLoader`), so nobody writes per-variant blocks by hand.

Everything here is plain Python over dictionaries: no Kedro session or MLflow needed.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from kedro.framework.project import settings
from kedro.utils import find_kedro_project
from pydantic import Field, field_validator

from omics_vae.families import FAMILIES, with_default_hyperparameters
from omics_vae.params import StrictModel, validate_section

SWEEPS_KEY = "sweeps"
SWEEPS_FILE = "conf/base/parameters_sweeps.yml"
_NAME_SEPARATOR = "__"


class SweepError(ValueError):
    """A sweep declaration that cannot be expanded."""


class SweepSpec(StrictModel):
    """One sweep under ``sweeps.<name>`` in the parameters."""

    description: str = ""
    family: str = Field(
        "single_cell",
        description="Which data family (omics_vae.families): single_cell (h5ad) or paired "
        "(two tables).",
    )
    base: dict[str, Any] = Field(
        default_factory=dict, description="Dotted overrides applied to every variant."
    )
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Named variants, each a set of dotted overrides."
    )
    grid: dict[str, list[Any]] = Field(
        default_factory=dict,
        description="Cartesian product of values per dotted key; one variant per combination.",
    )
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("family")
    @classmethod
    def _known_family(cls, family: str) -> str:
        if family not in FAMILIES:
            raise ValueError(f"unknown family {family!r}; the families are {sorted(FAMILIES)}")
        return family

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct, got {seeds}")
        return seeds


@dataclass(frozen=True)
class Variant:
    """One expanded variant: a Kedro namespace and the overrides it applies."""

    name: str
    sweep: str
    group: str
    seed: int
    family: str = "single_cell"
    overrides: dict[str, Any] = field(default_factory=dict)


def expand_sweep(sweep: str, spec: SweepSpec) -> list[Variant]:
    """The variants of one sweep: (named variants + grid combinations) x seeds."""
    seed_key = FAMILIES[spec.family].seed
    groups = [(label, overrides) for label, overrides in spec.variants.items()]
    groups += _grid_groups(sweep, spec.grid)
    if not groups:
        groups = [("base", {})]
    variants = []
    for label, overrides in groups:
        group = _identifier(f"{sweep}{_NAME_SEPARATOR}{label}")
        for seed in spec.seeds:
            variants.append(
                Variant(
                    name=f"{group}{_NAME_SEPARATOR}seed_{seed}",
                    sweep=sweep,
                    group=group,
                    seed=seed,
                    family=spec.family,
                    overrides={**spec.base, **overrides, seed_key: seed},
                )
            )
    _refuse_duplicate_names(sweep, variants)
    return variants


def _grid_groups(sweep: str, grid: Mapping[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    if not grid:
        return []
    for key, values in grid.items():
        if not values:
            raise SweepError(
                f"sweeps.{sweep}.grid.{key} is an empty list: a grid axis needs at least one "
                f"value. Give it values or remove it ({SWEEPS_FILE})."
            )
    keys = list(grid)
    groups = []
    for combination in itertools.product(*(grid[key] for key in keys)):
        overrides = dict(zip(keys, combination, strict=True))
        label = _NAME_SEPARATOR.join(
            f"{key.rsplit('.', 1)[-1]}_{_value_label(value)}" for key, value in overrides.items()
        )
        groups.append((label, overrides))
    return groups


def _value_label(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return "-".join(_value_label(item) for item in value) or "none"
    if value is None:
        return "none"
    return str(value).replace(".", "p").replace("-", "m")


def _identifier(text: str) -> str:
    # Kedro namespaces are dot-separated; a dot inside a name would nest it.
    return re.sub(r"[^0-9A-Za-z_]+", "_", text).strip("_")


def _refuse_duplicate_names(sweep: str, variants: list[Variant]) -> None:
    seen: dict[str, Variant] = {}
    for variant in variants:
        if variant.name in seen:
            raise SweepError(
                f"Two variants of sweep '{sweep}' expand to the same name '{variant.name}' "
                f"(overrides {seen[variant.name].overrides} and {variant.overrides}). Rename a "
                f"named variant or change the grid values in {SWEEPS_FILE}."
            )
        seen[variant.name] = variant


def variant_parameters(params: Mapping[str, Any], variant: Variant) -> dict[str, Any]:
    """The swept parameter blocks of ``params`` with the variant's overrides applied, and
    its Lightning checkpoints in a folder of its own (so ``resume_from: last`` finds the
    variant's own run).

    The blocks are validated with the rest of the parameters, by the project's context
    (``omics_vae.context``), after the project's own blocks.

    Raises:
        SweepError: An override key that is not in the project's parameters, or a value
            whose type differs from the default's.
    """
    keys = FAMILIES[variant.family]
    blocks = {section: copy.deepcopy(params.get(section, {})) for section in keys.sections}
    checkpoints = _get(blocks, keys.checkpoint_dir)
    if checkpoints:
        _set_override(blocks, keys.checkpoint_dir, f"{checkpoints}/sweeps/{variant.name}", variant)
    for key, value in variant.overrides.items():
        _set_override(blocks, key, value, variant)
    return blocks


def _get(blocks: dict[str, Any], key: str) -> Any:
    node: Any = blocks
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _set_override(blocks: dict[str, Any], key: str, value: Any, variant: Variant) -> None:
    section, *path = key.split(".")
    where = f"sweeps.{variant.sweep} (variant '{variant.name}') override '{key}'"
    keys = FAMILIES[variant.family]
    if section not in keys.sections or not path:
        raise SweepError(
            f"{where}: a {variant.family} sweep overrides keys under "
            f"{', '.join(keys.sections)}, written as dotted paths such as "
            f"'{keys.seed}' ({SWEEPS_FILE})."
        )
    if keys.fixed_prefix and key.startswith(keys.fixed_prefix):
        raise SweepError(
            f"{where}: '{keys.fixed_prefix}' is shared by every variant (data processing "
            f"runs once per sweep). Change it in the project's parameters instead."
        )
    node = blocks[section]
    for depth, part in enumerate(path):
        if not isinstance(node, dict) or part not in node:
            known = sorted(node) if isinstance(node, dict) else []
            prefix = ".".join([section, *path[:depth]])
            raise SweepError(
                f"{where}: '{part}' is not a key of '{prefix}' in the project's parameters "
                f"(keys there: {known}). Check the spelling in {SWEEPS_FILE}."
            )
        if depth < len(path) - 1:
            node = node[part]
    default = node[path[-1]]
    if not _same_kind(default, value):
        raise SweepError(
            f"{where}: {value!r} is a {type(value).__name__}, but the default "
            f"{default!r} is a {type(default).__name__}. Give a value of the same type "
            f"({SWEEPS_FILE})."
        )
    node[path[-1]] = copy.deepcopy(value)


def _same_kind(default: Any, value: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int | float) and isinstance(value, int | float):
        return isinstance(default, float) or isinstance(value, int)
    if isinstance(default, str) or isinstance(value, str):
        # "auto" style defaults accept concrete values of another type and back.
        return True
    return isinstance(value, type(default))


def expand_sweeps(params: Mapping[str, Any]) -> dict[str, list[Variant]]:
    """Every declared sweep's variants, keyed by sweep name, in declaration order."""
    declared = params.get(SWEEPS_KEY) or {}
    if not isinstance(declared, Mapping):
        raise SweepError(f"'{SWEEPS_KEY}' must map sweep names to sweeps ({SWEEPS_FILE}).")
    sweeps = {}
    for sweep, raw in declared.items():
        spec = validate_section(f"{SWEEPS_KEY}.{sweep}", SweepSpec, raw or {})
        sweeps[_identifier(sweep)] = expand_sweep(_identifier(sweep), spec)
    _refuse_clashes_across_sweeps(sweeps)
    return sweeps


def _refuse_clashes_across_sweeps(sweeps: Mapping[str, list[Variant]]) -> None:
    owners: dict[str, str] = {}
    for sweep, variants in sweeps.items():
        for variant in variants:
            if variant.name in owners and owners[variant.name] != sweep:
                raise SweepError(
                    f"Sweeps '{owners[variant.name]}' and '{sweep}' both have a variant "
                    f"'{variant.name}'. Rename one of the sweeps in {SWEEPS_FILE}."
                )
            owners[variant.name] = sweep


def _refuse_clashes_with_parameters(names: list[str], params: Mapping[str, Any]) -> None:
    for name in names:
        if name in params:
            raise SweepError(
                f"Sweep variant '{name}' clashes with the top-level parameter key '{name}'. "
                f"Rename the sweep in {SWEEPS_FILE}."
            )


def sweep_parameters(params: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The namespaced parameter blocks of every variant, keyed by variant name.

    The models' hyperparameters are completed from their declarations first
    (``families.with_default_hyperparameters``), so a variant may override one the
    project's YAML leaves at its default.
    """
    params = with_default_hyperparameters(params)
    blocks = {}
    sweeps = expand_sweeps(params)
    _refuse_clashes_with_parameters([v.name for vs in sweeps.values() for v in vs], params)
    for variants in sweeps.values():
        for variant in variants:
            seed_key = FAMILIES[variant.family].seed
            blocks[variant.name] = {
                **variant_parameters(params, variant),
                "sweep": {
                    "name": variant.sweep,
                    "family": variant.family,
                    "variant": variant.name,
                    "group": variant.group,
                    "seed": variant.seed,
                    "overrides": {k: v for k, v in variant.overrides.items() if k != seed_key},
                },
            }
    return blocks


# The running session's config loader, set by SweepRunHooks when its context is created.
_session: dict[str, OmegaConfigLoader] = {}


def use_config_loader(config_loader: OmegaConfigLoader) -> None:
    """Remember the running session's config loader (its environment and --params), so
    the pipeline registry expands the sweeps that session sees."""
    _session["config_loader"] = config_loader


def project_parameters() -> dict[str, Any]:
    """The parameters of the running session, or of the default environment without one
    (e.g. when a tool lists the pipelines before creating a session)."""
    if "config_loader" in _session:
        return _session["config_loader"]["parameters"]
    project = find_kedro_project(Path.cwd()) or Path.cwd()
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(project / settings.CONF_SOURCE), **settings.CONFIG_LOADER_ARGS
    )
    return loader["parameters"]


class SweepConfigLoader(OmegaConfigLoader):
    """Kedro's OmegaConfigLoader, with every model hyperparameter the parameters leave to
    its declared default written out (``families.with_default_hyperparameters``), plus
    each sweep variant's parameters under its name.

    ``--params`` values are merged before both, so a runtime override such as
    ``training.trainer.max_epochs=5`` reaches every variant.
    """

    def __getitem__(self, key: str) -> dict[str, Any]:
        if key != "parameters":
            return super().__getitem__(key)
        # Read by the context, the pipeline registry and plugins: expanded once.
        if getattr(self, "_expanded_parameters", None) is None:
            config = with_default_hyperparameters(super().__getitem__(key))
            if config.get(SWEEPS_KEY):
                config = {**config, **sweep_parameters(config)}
            self._expanded_parameters = config
        return copy.deepcopy(self._expanded_parameters)
