"""The settings a refusal tells the user to make, read from its message, so a test can
apply them and check that they are keys that work.

A message names a setting as ``<block>.<dotted.key>: <value>`` (the YAML a user writes in
``conf/local/``); ``printed_settings`` finds each one, ``apply`` writes them into the
parameter blocks and validates each block against its schema, so a misspelt key or a
value the schema refuses fails the test.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from omics_vae.context import parameter_schemas

_SETTING = re.compile(
    r"\b(?P<key>(?:" + "|".join(parameter_schemas()) + r")(?:\.\w+)+): "
    r"(?P<value>\[\]|null|true|false|-?\d+(?:\.\d+)?(?:e-?\d+)?|[A-Za-z_]\w*)"
)


def printed_settings(message: str) -> dict[str, Any]:
    """``{dotted key: value}`` of every setting the message prints, in order."""
    return {match["key"]: yaml.safe_load(match["value"]) for match in _SETTING.finditer(message)}


def apply(settings: dict[str, Any], blocks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``blocks`` (``{"data_processing": {...}, ...}``) with ``settings`` written in, each
    changed block validated against its schema (unknown keys and bad values refused)."""
    changed = copy.deepcopy(blocks)
    for dotted, value in settings.items():
        block, *parents, leaf = dotted.split(".")
        target = changed.setdefault(block, {})
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    for block in {dotted.split(".")[0] for dotted in settings}:
        parameter_schemas()[block].model_validate(changed[block])
    return changed
