"""The base of every settings section, and values read the way people write them.

YAML 1.1 (PyYAML) reads ``3e-4`` as a string and Snakemake's ``--config`` gives every nested
value as a string, so numbers, booleans and ``null`` are also accepted in their written form;
a boolean is never taken for a number, and numbers must be finite.
"""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, FiniteFloat, StringConstraints, model_validator

# How YAML (and Snakemake's --config) spell "no value".
NULL_WORDS = frozenset({"null", "Null", "NULL", "~", "None"})


def _integer(value: Any) -> Any:
    """``3.0``, ``"3"``, ``"1e6"`` -> an int; a boolean is refused (pydantic would take True for 1)."""
    if isinstance(value, bool):
        raise ValueError(f"expected an integer, got {str(value).lower()}")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return value  # pydantic names the type it expected
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _real(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {str(value).lower()}")
    return value


Int = Annotated[int, BeforeValidator(_integer)]
Float = Annotated[FiniteFloat, BeforeValidator(_real)]
# Corpus, run and experiment names become file and folder names and Snakemake wildcards.
Name = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


def _allows_none(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _allows_none(typing.get_args(annotation)[0])
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


def default_of(section: type[BaseModel], field: str) -> Any:
    """A settings field's default, for a function signature that offers the same setting (one home)."""
    return section.model_fields[field].get_default(call_default_factory=True)


class Section(BaseModel):
    """A settings section: unknown keys are errors, values are immutable, and each field's
    docstring is its description (``scratchlm config show`` prints it)."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _null_words(cls, values: Any) -> Any:
        """``"null"`` (as Snakemake's --config passes it) is None where a field allows None."""
        if not isinstance(values, dict):
            return values
        return {key: None if isinstance(value, str) and value in NULL_WORDS and key in cls.model_fields
                and _allows_none(cls.model_fields[key].annotation) else value for key, value in values.items()}
