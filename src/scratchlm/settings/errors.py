"""One line for a settings error: where the value came from (file and key path), and what is wrong."""

from __future__ import annotations

import re
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

# Parts of pydantic's error locations that name a branch of a type (`float`, `literal['auto']`,
# `function-after[...]`), not a key that the user wrote.
_TYPE_TAG = re.compile(r"^(\[key\]|bool|int|float|str|none|list\[.*|dict\[.*|literal\[.*|function-\w+\[.*"
                       r"|constrained-\w+|lax-\w+|strict-\w+|tagged-union\[.*|json-or-python\[.*)$")


class SettingsError(ValueError):
    """A setting that cannot be used: its message is one line naming the file and the key."""


Path = tuple[str | int, ...]


def key_path(location: tuple[str | int, ...]) -> Path:
    """A pydantic error location as the keys the user wrote (type-branch tags removed)."""
    return tuple(part for part in location if not (isinstance(part, str) and _TYPE_TAG.match(part)))


def describe(error: ValidationError, model: type[BaseModel], where: Callable[[Path], str]) -> str:
    """The first problem of ``error`` (its alternatives joined), prefixed by ``where(key path)``."""
    errors = error.errors()
    path = key_path(errors[0]["loc"])
    same = [e for e in errors if key_path(e["loc"]) == path]
    if same[0]["type"] == "extra_forbidden":
        problem = f"unknown setting; allowed here: {', '.join(_fields_at(model, path[:-1]))}"
    elif same[0]["type"] == "missing":
        problem = "required, but not given"
    else:
        messages = dict.fromkeys(e["msg"].removeprefix("Value error, ") for e in same)  # unique, in order
        problem = " or ".join(messages)
        if same[0]["type"] != "value_error":  # a value error's own message says what it got
            problem += f", got {_shown(same[0]['input'])}"
    rest = len({key_path(e["loc"]) for e in errors}) - 1
    return f"{where(path)}: {problem}" + (f" (and {rest} more problem{'s' * (rest > 1)})" if rest else "")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fields_at(model: type[BaseModel], path: Path) -> list[str]:
    """The field names of the section at ``path`` under ``model`` (dict keys and list indices skipped)."""
    current: Any = model
    for part in path:
        field = getattr(current, "model_fields", {}).get(part) if isinstance(part, str) else None
        if field is not None:
            current = _section_of(field.annotation)
    return list(getattr(current, "model_fields", {}))


def _section_of(annotation: Any) -> Any:
    """The settings class inside an annotation (``X``, ``X | None``, ``dict[str, X]``, ``list[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in getattr(annotation, "__args__", ()):
        found = _section_of(argument)
        if found is not None:
            return found
    return None
