"""relia._fieldnames: what to say of a field a model does not take."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from relia._fieldnames import fields_at, unknown_field


class _Item(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    long_window: str = Field("1h", alias="longWindow")


class _Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    items: list[_Item] | None = None


def test_fields_at_steps_into_list_items_and_writes_aliases() -> None:
    assert fields_at(_Doc, ()) == ["name", "items"]
    assert fields_at(_Doc, ("items", 0)) == ["kind", "longWindow"]
    assert fields_at(_Doc, ("name",)) == []  # not a section
    assert fields_at(_Doc, ("nope", 0)) == []


def test_unknown_field_suggests_the_closest_or_lists_the_known() -> None:
    assert unknown_field(_Doc, ("items", 2, "longWindw")) == (
        "unknown field 'longWindw'; did you mean 'longWindow'?"
    )
    assert unknown_field(_Doc, ("zzz",)) == "unknown field 'zzz' (known here: name, items)"
    assert unknown_field(_Doc, ("name", "x")) == "unknown field 'x'"
