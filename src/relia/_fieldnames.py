"""What to say of a field a pydantic model does not take: the closest one it does, or the list.

relia.yaml, SLO specs and Sloth AlertWindows files are all validated by pydantic models that
forbid unknown fields, and pydantic's own words ("Extra inputs are not permitted") say neither
which field was meant nor which are allowed.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Sequence

from pydantic import BaseModel

__all__ = ["fields_at", "unknown_field"]


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X | None``, ``list[X]``, ``Annotated[X]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def fields_at(model: type[BaseModel] | None, loc: Sequence[str | int]) -> list[str]:
    """The field names (as written in YAML: aliases where set) of the model found at ``loc``
    under ``model``; a list item's index steps into the item's model. Empty if none is there."""
    cls = model
    for part in loc:
        if cls is None:
            return []
        if isinstance(part, int):
            continue
        found = None
        for name, info in cls.model_fields.items():
            if (info.alias or name) == part:
                found = _model_in(info.annotation)
                break
        cls = found
    if cls is None:
        return []
    return [info.alias or name for name, info in cls.model_fields.items()]


def unknown_field(model: type[BaseModel] | None, loc: Sequence[str | int]) -> str:
    """``unknown field 'prot'; did you mean 'port'?``, or the fields known there."""
    name = str(loc[-1]) if loc else "?"
    allowed = fields_at(model, loc[:-1])
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown field {name!r}; did you mean {close[0]!r}?"
    if allowed:
        return f"unknown field {name!r} (known here: {', '.join(allowed)})"
    return f"unknown field {name!r}"
