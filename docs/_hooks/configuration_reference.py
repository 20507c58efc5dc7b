"""MkDocs hook: the configuration reference, generated from the parameter schemas.

Every build renders ``reference/configuration.md`` from ``omics_vae.context.parameter_schemas()``
(the pydantic models that validate ``conf/<env>/parameters_*.yml`` on load) and from each
registered model's hyperparameter schema, so the page cannot drift from the code.
"""

from __future__ import annotations

import json
import re
import typing
from typing import Any

from mkdocs.structure.files import File
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from omics_vae.context import parameter_schemas
from omics_vae.families import FAMILIES
from omics_vae.models import MODEL_SPECS, get_model_class
from omics_vae.schemas.training import hyperparameter_schema

PAGE = "reference/configuration.md"

INTRODUCTION = """# Configuration reference

Generated from the parameter schemas at every build of this site. Each top-level key
lives in `conf/base/parameters_<key>.yml`; override any of them in `conf/local/` (only
the keys that change) or with `kedro run --params <dotted.key>=<value>`. Unknown keys and
wrong types stop a run in its first second, naming the dotted key.
"""


def on_files(files, config):
    files.append(File.generated(config, PAGE, content=configuration_reference()))
    return files


def configuration_reference() -> str:
    sections = [INTRODUCTION]
    for key, schema in parameter_schemas().items():
        sections.append(f"## `{key}`\n\n{_doc(schema)}")
        sections.extend(_tables(schema, key))
        sections.extend(_model_hyperparameters(key))
    return "\n\n".join(section.strip() for section in sections if section) + "\n"


def _model_hyperparameters(key: str) -> list[str]:
    """A table per model trained by a training block under ``key``, from the model's one
    declaration of its hyperparameters."""
    sections = []
    for family in FAMILIES.values():
        if family.training_section.split(".")[0] != key:
            continue
        schema = family.training_schema
        for name, spec in sorted(MODEL_SPECS.items()):
            if spec.data_kind != schema.data_kind:
                continue
            model_class = get_model_class(name)
            prefix = f"{family.training_section}.{schema.hyperparameters_key(name)}"
            declaration = model_class.hyperparameter_class
            sections.append(
                f"### `{prefix}`\n\nThe hyperparameters of `{model_class.__name__}`, used "
                f"when `{family.training_section}.model` is `{name}`. They and their "
                f"defaults are declared once, in `{declaration.__module__}."
                f"{declaration.__qualname__}`; the YAML lists only what it changes. "
                "Learning rate, weight decay and optimiser come from `optimizer`."
            )
            sections.extend(_tables(hyperparameter_schema(model_class), prefix))
    return sections


def _tables(schema: type[BaseModel], prefix: str, *, heading: bool = False) -> list[str]:
    """A table of the schema's fields, then one section per nested schema."""
    rows = ["| key | type | default | description |", "|---|---|---|---|"]
    nested = []
    for name, field in schema.model_fields.items():
        key = f"{prefix}.{name}"
        rows.append(
            f"| `{key}` | {_type(field.annotation)} | {_default(field)} | "
            f"{_one_line(field.description or '')} |"
        )
        for child, suffix in _nested_models(field.annotation):
            nested.append((f"{key}{suffix}", child))
    sections = [(f"### `{prefix}`\n\n{_doc(schema)}\n\n" if heading else "") + "\n".join(rows)]
    seen = set()
    for key, child in nested:
        if (key, child) not in seen:
            seen.add((key, child))
            sections.extend(_tables(child, key, heading=True))
    return sections


def _nested_models(annotation: Any) -> list[tuple[type[BaseModel], str]]:
    """Schemas inside a field's type; ``[]`` marks the items of a list."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, "")]
    found = []
    in_list = typing.get_origin(annotation) is list
    for argument in typing.get_args(annotation):
        found += [(model, "[]" if in_list else s) for model, s in _nested_models(argument)]
    return found


def _type(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        text = annotation.__name__
    else:
        # typing.Literal['auto'] -> Literal['auto'], omics_vae.x.PhaseParams -> PhaseParams
        text = re.sub(r"\b[A-Za-z_]\w*\.", "", repr(annotation)).replace("NoneType", "None")
    return f"`{text}`".replace("|", "\\|")


def _default(field) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "(below)"
    return f"`{json.dumps(value, default=str)}`".replace("|", "\\|")


def _doc(schema: type[BaseModel]) -> str:
    doc = schema.__doc__ or ""
    return "" if doc.startswith(("A base class", "!!!")) else _one_line(doc)


def _one_line(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")
