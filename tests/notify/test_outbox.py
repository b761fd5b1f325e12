"""The outbox: items and dedup keys, and the store's outbox methods (DuckDB, PostgreSQL and
the engine tests' in-memory fake)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from relia.errors import DataError
from relia.incidents.model import Severity
from relia.notify.outbox import OutboxItem, OutboxStatus, dedup_key, notifications_for
from relia.store import DuckDBStore
from relia.store.migrations import load_migrations
from tests.engine.memstore import MemoryStore
from tests.notify.factory import T0, incident, resolved
from tests.store.backends import BACKENDS, open_backend


def test_notifications_for_makes_one_pending_item_per_sink() -> None:
    inc = incident(version=3)
    items = notifications_for(inc, ["am", "hook"], now=T0 + 5)
    assert [i.id for i in items] == ["am:inc1:3", "hook:inc1:3"]
    assert items[0].id == dedup_key("am", "inc1", 3)
    for item in items:
        assert item.status is OutboxStatus.PENDING
        assert (item.created_at, item.next_attempt_at, item.attempts) == (T0 + 5, T0 + 5, 0)
        assert item.version == 3 and item.incident_id == "inc1"
        # A JSON snapshot: it survives a round trip through text unchanged.
        assert json.loads(json.dumps(item.payload)) == item.payload
        assert item.payload["severity"] == "warning" and item.payload["version"] == 3
        assert item.delivered_at is None and item.last_error is None


def test_the_payload_is_a_snapshot() -> None:
    inc = incident()
    (item,) = notifications_for(inc, ["am"], now=T0)
    later = inc.model_copy(update={"title": "changed", "severity": Severity.CRITICAL})
    assert later.title == "changed"
    assert item.payload["title"] == inc.title and item.payload["severity"] == "warning"


def test_the_payload_holds_plain_json_values_only() -> None:
    # A cause may carry any value; the snapshot keeps what JSON can say (a tuple becomes a list,
    # an enum its string), so a store round trip or a sink's json.dumps gives back the same.
    cause = [{"key": "k", "score": 0.9, "reason": "first", "window": (1, 2)}]
    (item,) = notifications_for(incident(cause=cause), ["am"], now=T0)
    assert item.payload["cause"][0]["window"] == [1, 2]
    assert type(item.payload["severity"]) is str and type(item.payload["status"]) is str


def test_the_payload_lists_at_most_100_findings_and_keys_with_their_totals() -> None:
    # An incident that never calms down gathers findings for days; each notification (and each
    # webhook body) holds the newest 100 finding ids and the first 100 keys, and the totals.
    many = incident(
        finding_ids=[f"f{i}" for i in range(250)], keys=[f"k{i:03d}" for i in range(150)]
    )
    (item,) = notifications_for(many, ["hook"], now=T0)
    assert item.payload["finding_ids"] == [f"f{i}" for i in range(150, 250)]
    assert item.payload["keys"] == [f"k{i:03d}" for i in range(100)]
    assert (item.payload["finding_count"], item.payload["key_count"]) == (250, 150)
    (small,) = notifications_for(incident(), ["hook"], now=T0)
    assert small.payload["finding_ids"] == ["f1", "f2"] and small.payload["finding_count"] == 2
    assert small.payload["key_count"] == 2 and len(small.payload["keys"]) == 2


def test_the_payload_counts_the_findings_an_incident_no_longer_lists() -> None:
    # The incident keeps the newest findings of each key; its finding_count is of them all.
    capped = incident(finding_ids=[f"f{i}" for i in range(980, 1000)], finding_count=1000)
    (item,) = notifications_for(capped, ["hook"], now=T0)
    assert item.payload["finding_count"] == 1000 and len(item.payload["finding_ids"]) == 20


def test_an_item_cannot_be_changed_in_place() -> None:
    (item,) = notifications_for(incident(), ["am"], now=T0)
    with pytest.raises(ValidationError):
        item.status = OutboxStatus.DELIVERED  # type: ignore[misc]
    assert item.status is OutboxStatus.PENDING


@pytest.mark.parametrize(("field", "value"), [("version", 0), ("attempts", -1)])
def test_an_item_rejects_a_version_below_one_and_negative_attempts(field: str, value: int) -> None:
    fields: dict[str, Any] = {
        "id": "am:inc1:1",
        "sink": "am",
        "incident_id": "inc1",
        "version": 1,
        "payload": {},
        "created_at": T0,
        "next_attempt_at": T0,
    }
    OutboxItem(**fields)
    with pytest.raises(ValidationError, match=field):
        OutboxItem(**{**fields, field: value})


@pytest.fixture(params=[*BACKENDS, "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        with open_backend(request, request.param, 2000) as s:
            yield s


def test_enqueue_is_deduplicated(store: Any) -> None:
    items = notifications_for(incident(), ["am", "log"], now=T0)
    assert store.enqueue_notifications(items) == 2
    assert store.enqueue_notifications(items) == 0
    assert store.enqueue_notifications(notifications_for(incident(), ["am"], now=T0 + 9)) == 0
    assert store.outbox_counts() == {
        "am": {"pending": 1, "delivered": 0, "failed": 0},
        "log": {"pending": 1, "delivered": 0, "failed": 0},
    }
    assert store.enqueue_notifications([]) == 0


def test_round_trip_keeps_every_field(store: Any) -> None:
    (item,) = notifications_for(incident(), ["am"], now=T0)
    store.enqueue_notifications([item])
    (got,) = store.due_notifications("am", T0, 10)
    assert got == item
    store.mark_attempt_failed(item.id, 1, T0 + 1000, "HTTP 503")
    assert store.due_notifications("am", T0 + 999, 10) == []
    (again,) = store.due_notifications("am", T0 + 1000, 10)
    assert (again.attempts, again.next_attempt_at, again.last_error) == (1, T0 + 1000, "HTTP 503")
    assert again.status is OutboxStatus.PENDING
    store.mark_delivered([item.id], T0 + 1500)
    assert store.due_notifications("am", T0 + 10**9, 10) == []
    assert store.outbox_counts()["am"] == {"pending": 0, "delivered": 1, "failed": 0}
    # Marking again changes nothing: delivered stays delivered.
    store.mark_attempt_failed(item.id, 9, T0, "late", give_up=True)
    store.mark_delivered([item.id], T0 + 9999)
    assert store.outbox_counts()["am"] == {"pending": 0, "delivered": 1, "failed": 0}


def test_give_up_marks_failed(store: Any) -> None:
    (item,) = notifications_for(incident(), ["am"], now=T0)
    store.enqueue_notifications([item])
    store.mark_attempt_failed(item.id, 1, T0, "HTTP 400: bad alert", give_up=True)
    assert store.due_notifications("am", T0 + 10**9, 10) == []
    assert store.outbox_counts()["am"] == {"pending": 0, "delivered": 0, "failed": 1}


def test_due_is_oldest_first_and_one_version_per_incident(store: Any) -> None:
    a1 = incident("a")
    a2 = a1.model_copy(update={"version": 2})
    a3 = resolved(a2, T0 + 3)
    b1 = incident("b")
    store.enqueue_notifications(notifications_for(a3, ["am"], now=T0 + 3))
    store.enqueue_notifications(notifications_for(b1, ["am"], now=T0 + 2))
    store.enqueue_notifications(notifications_for(a1, ["am", "log"], now=T0))
    store.enqueue_notifications(notifications_for(a2, ["am"], now=T0 + 1))
    # a2 and a3 wait behind a1 (same incident, same sink); b1 does not.
    assert [i.id for i in store.due_notifications("am", T0 + 10, 10)] == ["am:a:1", "am:b:1"]
    assert [i.id for i in store.due_notifications("am", T0 + 10, 1)] == ["am:a:1"]
    # a1 is retrying later: a2 still waits (it must not overtake a1).
    store.mark_attempt_failed("am:a:1", 1, T0 + 100, "down")
    assert [i.id for i in store.due_notifications("am", T0 + 10, 10)] == ["am:b:1"]
    store.mark_delivered(["am:a:1"], T0 + 100)
    assert [i.id for i in store.due_notifications("am", T0 + 10, 10)] == ["am:a:2", "am:b:1"]
    # A version given up on does not block the next one.
    store.mark_attempt_failed("am:a:2", 1, T0, "rejected", give_up=True)
    assert [i.id for i in store.due_notifications("am", T0 + 10, 10)] == ["am:b:1", "am:a:3"]
    # Sinks are independent.
    assert [i.id for i in store.due_notifications("log", T0 + 10, 10)] == ["log:a:1"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_stores_reject_what_is_not_an_item(request: pytest.FixtureRequest, backend: str) -> None:
    with open_backend(request, backend, 2000) as s:
        with pytest.raises(DataError, match=r"items\[0\]"):
            s.enqueue_notifications(["am:x:1"])
        assert s.outbox_counts() == {}


def test_mark_delivered_counts_one_attempt_per_pending_item(store: Any) -> None:
    items = notifications_for(incident(), ["am", "log"], now=T0)
    store.enqueue_notifications(items)
    store.mark_delivered([items[0].id, "am:unknown:1"], T0 + 7)
    assert store.due_notifications("am", T0 + 10, 10) == []
    assert [i.id for i in store.due_notifications("log", T0 + 10, 10)] == ["log:inc1:1"]
    assert store.outbox_counts()["am"] == {"pending": 0, "delivered": 1, "failed": 0}
    store.mark_delivered([], T0 + 8)


def test_outbox_survives_reopening_the_file(tmp_path: Path) -> None:
    path = tmp_path / "relia.duckdb"
    items = notifications_for(incident(), ["am"], now=T0)
    with DuckDBStore(path) as s:
        s.enqueue_notifications(items)
    with DuckDBStore(path) as s:
        assert s.due_notifications("am", T0, 10) == items
        assert s.enqueue_notifications(items) == 0


def test_migration_adds_the_outbox_to_an_older_store(tmp_path: Path) -> None:
    migrations = load_migrations()
    assert any(m.name == "outbox" and m.version == 5 for m in migrations)
    older = tmp_path / "v4"
    older.mkdir()
    for m in migrations[:4]:
        (older / f"{m.version:04d}_{m.name}.sql").write_text(m.sql)
    path = tmp_path / "relia.duckdb"
    with DuckDBStore(path, migrations_dir=older) as s:
        assert s.schema_version == 4
    with DuckDBStore(path) as s:
        assert s.schema_version >= 5
        (item,) = notifications_for(incident(), ["am"], now=T0)
        assert s.enqueue_notifications([item]) == 1
        assert isinstance(s.due_notifications("am", T0, 1)[0], OutboxItem)
