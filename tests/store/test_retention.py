"""History retention in the stores (``Store.prune_history``), on DuckDB, PostgreSQL and the
engine tests' memory store: what is old and finished goes, what is pending or open stays."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from relia.incidents.model import Incident, IncidentStatus, Severity
from relia.notify.outbox import OutboxItem, OutboxStatus
from tests.engine.memstore import MemoryStore
from tests.store.backends import BACKENDS, finding, open_backend

DAY = 86_400_000
T0 = 1_700_000_000_000
NOW = T0 + 100 * DAY
CUT = NOW - 30 * DAY  # prune_history(CUT): what finished before it goes
OLD = CUT - 10 * DAY
NEW = CUT + 10 * DAY


@pytest.fixture(params=[*BACKENDS, "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    s = MemoryStore() if request.param == "memory" else open_backend(request, request.param, 2000)
    yield s
    s.close()


def incident(iid: str, finding_ids: list[str], *, resolved_at: int | None, at: int) -> Incident:
    """An incident opened at ``at``; resolved at ``resolved_at`` unless that is None."""
    return Incident(
        id=iid,
        status=IncidentStatus.OPEN if resolved_at is None else IncidentStatus.RESOLVED,
        title=f"{iid} on job=api",
        severity=Severity.WARNING,
        labels={"job": "api"},
        start=at,
        end=at + 60_000,
        opened_at=at,
        updated_at=resolved_at if resolved_at is not None else at,
        resolved_at=resolved_at,
        version=2 if resolved_at is not None else 1,
        finding_ids=finding_ids,
        keys=['cpu{job="api"}'],
        cause=[],
    )


def item(iid: str, *, created: int, status: OutboxStatus, done: int | None = None) -> OutboxItem:
    """An outbox item created at ``created``; delivered at ``done``, or given up at ``done``
    (its ``next_attempt_at``, as the dispatcher records it)."""
    delivered = done if status is OutboxStatus.DELIVERED else None
    failed = status is OutboxStatus.FAILED
    return OutboxItem(
        id=f"hook:{iid}:1",
        sink="hook",
        incident_id=iid,
        version=1,
        payload={"id": iid, "title": "x" * 200},
        created_at=created,
        attempts=1 if status is not OutboxStatus.PENDING else 0,
        next_attempt_at=done if failed and done is not None else created,
        delivered_at=delivered,
        last_error="HTTP 400" if failed else None,
        status=status,
    )


def outbox_ids(store: Any) -> set[str]:
    counts = store.outbox_counts().get("hook", {})
    ids: set[str] = set()
    # due_notifications lists only pending items: count the rest through outbox_counts.
    for it in store.due_notifications("hook", NOW + 365 * DAY, 1000):
        ids.add(it.id)
    assert counts.get("pending", 0) == len(ids)
    return ids


def test_pending_notifications_are_kept_whatever_their_age(store: Any) -> None:
    store.enqueue_notifications(
        [
            item("ancient", created=T0, status=OutboxStatus.PENDING),
            item("old", created=OLD, status=OutboxStatus.PENDING),
        ]
    )
    got = store.prune_history(CUT)
    assert got == {"outbox": 0, "incidents": 0, "findings": 0}
    assert outbox_ids(store) == {"hook:ancient:1", "hook:old:1"}


def test_finished_notifications_older_than_the_cut_go(store: Any) -> None:
    items = [
        item("d-old", created=OLD - DAY, status=OutboxStatus.PENDING),
        item("f-old", created=OLD - DAY, status=OutboxStatus.PENDING),
        item("d-new", created=OLD, status=OutboxStatus.PENDING),
        item("f-new", created=OLD, status=OutboxStatus.PENDING),
        item("pending", created=OLD, status=OutboxStatus.PENDING),
    ]
    store.enqueue_notifications(items)
    store.mark_delivered(["hook:d-old:1"], OLD)
    store.mark_delivered(["hook:d-new:1"], NEW)  # written before the cut, delivered after it
    store.mark_attempt_failed("hook:f-old:1", 3, OLD, "HTTP 400", give_up=True)
    store.mark_attempt_failed("hook:f-new:1", 3, NEW, "HTTP 400", give_up=True)
    got = store.prune_history(CUT)
    assert got == {"outbox": 2, "incidents": 0, "findings": 0}
    assert store.outbox_counts()["hook"] == {"pending": 1, "delivered": 1, "failed": 1}
    assert outbox_ids(store) == {"hook:pending:1"}
    # Pruning again deletes nothing more.
    assert store.prune_history(CUT) == {"outbox": 0, "incidents": 0, "findings": 0}


def test_the_notification_of_a_kept_incidents_current_version_is_kept(store: Any) -> None:
    # A restart enqueues the current version of every open incident again; its old delivered
    # item must still be there to make that a no-op, not a second notification.
    store.save_incidents([incident("inc-open", [], resolved_at=None, at=T0)])  # version 1
    store.save_incidents([incident("inc-gone", [], resolved_at=OLD, at=T0)])  # version 2
    items = [
        item("inc-open", created=T0, status=OutboxStatus.PENDING),  # hook:inc-open:1, current
        item("inc-gone", created=T0, status=OutboxStatus.PENDING).model_copy(
            update={"id": "hook:inc-gone:2", "version": 2}
        ),
        item("other", created=T0, status=OutboxStatus.PENDING),  # its incident is not stored
    ]
    store.enqueue_notifications(items)
    store.mark_delivered([i.id for i in items], T0)
    got = store.prune_history(CUT)
    assert got == {"outbox": 2, "incidents": 1, "findings": 0}
    assert store.outbox_counts()["hook"] == {"pending": 0, "delivered": 1, "failed": 0}
    assert store.enqueue_notifications([items[0]]) == 0  # still known: not sent again


def test_open_incidents_and_their_findings_are_kept_whatever_their_age(store: Any) -> None:
    store.add_findings([finding("fa", T0, T0 + 60_000), finding("fb", OLD, OLD + 60_000)])
    store.save_incidents([incident("inc-open", ["fa", "fb"], resolved_at=None, at=T0)])
    assert store.prune_history(CUT) == {"outbox": 0, "incidents": 0, "findings": 0}
    assert store.incident("inc-open") is not None
    assert {f.id for f in store.findings(limit=100)} == {"fa", "fb"}


def test_a_resolved_incident_older_than_the_cut_goes_with_its_findings(store: Any) -> None:
    store.add_findings(
        [
            finding("gone1", OLD - DAY, OLD - DAY + 60_000),
            finding("gone2", OLD - DAY, OLD),
            # Old, but also listed by an incident that stays (resolved after the cut).
            finding("shared", OLD - DAY, OLD - DAY + 60_000),
            finding("kept-by-new", OLD, OLD + 60_000),
            # Old and in no incident at all (correlated into nothing, or never): goes too.
            finding("loose", OLD, OLD + 60_000),
            # Ends after the cut: stays, in an incident or not.
            finding("recent", NEW, NEW + 60_000),
            # Started before the cut, still going after it.
            finding("straddles", OLD, NEW),
        ]
    )
    store.save_incidents(
        [
            incident("inc-old", ["gone1", "gone2", "shared"], resolved_at=OLD, at=OLD - DAY),
            incident("inc-new", ["shared", "kept-by-new"], resolved_at=NEW, at=OLD),
            incident("inc-edge", [], resolved_at=CUT, at=OLD),  # resolved exactly at the cut
        ]
    )
    got = store.prune_history(CUT)
    assert got == {"outbox": 0, "incidents": 1, "findings": 3}
    assert store.incident("inc-old") is None
    assert store.incident("inc-new") is not None and store.incident("inc-edge") is not None
    left = {f.id for f in store.findings(limit=100)}
    assert left == {"shared", "kept-by-new", "recent", "straddles"}


def test_everything_at_once_counts_each_kind(store: Any) -> None:
    store.add_findings([finding(f"f{i}", OLD, OLD + 1000) for i in range(5)])
    store.add_findings([finding("open-f", OLD, OLD + 1000)])
    store.save_incidents(
        [
            incident("r1", ["f0", "f1"], resolved_at=OLD, at=OLD),
            incident("r2", ["f2"], resolved_at=OLD + 1, at=OLD),
            incident("open", ["open-f"], resolved_at=None, at=OLD),
        ]
    )
    store.enqueue_notifications(
        [item(f"n{i}", created=OLD, status=OutboxStatus.PENDING) for i in range(4)]
    )
    store.mark_delivered([f"hook:n{i}:1" for i in range(3)], OLD + 5)
    got = store.prune_history(CUT)
    assert got == {"outbox": 3, "incidents": 2, "findings": 5}
    assert [i.id for i in store.incidents()] == ["open"]
    assert [f.id for f in store.findings(limit=100)] == ["open-f"]
    assert outbox_ids(store) == {"hook:n3:1"}
    assert store.prune_history(CUT) == {"outbox": 0, "incidents": 0, "findings": 0}


def test_nothing_to_prune_in_an_empty_store(store: Any) -> None:
    assert store.prune_history(NOW) == {"outbox": 0, "incidents": 0, "findings": 0}


def test_what_finished_exactly_at_the_cut_is_kept(store: Any) -> None:
    store.add_findings([finding("at-cut", OLD, CUT), finding("before", OLD, CUT - 1)])
    store.save_incidents([incident("inc-at", [], resolved_at=CUT, at=OLD)])
    store.enqueue_notifications(
        [
            item("d-at", created=OLD, status=OutboxStatus.PENDING),
            item("d-before", created=OLD, status=OutboxStatus.PENDING),
            item("f-at", created=OLD, status=OutboxStatus.PENDING),
        ]
    )
    store.mark_delivered(["hook:d-at:1"], CUT)
    store.mark_delivered(["hook:d-before:1"], CUT - 1)
    store.mark_attempt_failed("hook:f-at:1", 3, CUT, "HTTP 400", give_up=True)
    assert store.prune_history(CUT) == {"outbox": 1, "incidents": 0, "findings": 1}
    assert [f.id for f in store.findings(limit=100)] == ["at-cut"]
    assert store.outbox_counts()["hook"] == {"pending": 0, "delivered": 1, "failed": 1}


def test_only_the_current_versions_notification_of_a_kept_incident_is_kept(store: Any) -> None:
    store.save_incidents([incident("inc", [], resolved_at=NEW, at=T0)])  # version 2, kept
    v1 = item("inc", created=T0, status=OutboxStatus.PENDING)  # hook:inc:1, an old version
    v2 = v1.model_copy(update={"id": "hook:inc:2", "version": 2})
    store.enqueue_notifications([v1, v2])
    store.mark_delivered([v1.id, v2.id], OLD)
    assert store.prune_history(CUT) == {"outbox": 1, "incidents": 0, "findings": 0}
    assert store.enqueue_notifications([v2]) == 0  # the current version's row stayed
    assert store.enqueue_notifications([v1]) == 1  # the old version's went


def test_an_open_incident_is_kept_even_with_an_old_resolved_at(store: Any) -> None:
    # Only the status says it is finished: an open incident is never pruned.
    inc = incident("inc", ["fa"], resolved_at=OLD, at=T0).model_copy(
        update={"status": IncidentStatus.OPEN}
    )
    store.add_findings([finding("fa", T0, T0 + 60_000)])
    store.save_incidents([inc])
    assert store.prune_history(CUT) == {"outbox": 0, "incidents": 0, "findings": 0}
    assert store.incident("inc") is not None


def versioned(iid: str, version: int, *, sink: str = "hook") -> OutboxItem:
    """``item(iid)`` at ``version`` for ``sink``."""
    return item(iid, created=T0, status=OutboxStatus.PENDING).model_copy(
        update={"id": f"{sink}:{iid}:{version}", "version": version, "sink": sink}
    )


def test_each_sinks_newest_notification_of_a_kept_incident_is_kept(store: Any) -> None:
    # Version 3 is saved and its notifications not yet enqueued (relia died in between, or
    # retention ran there): each sink's newest item of the incident stays, since it is how a
    # sink with a min_severity knows it heard about the incident (relia.notify.routing).
    inc = incident("inc", [], resolved_at=None, at=T0).model_copy(update={"version": 3})
    store.save_incidents([inc])
    rows = [versioned("inc", 1), versioned("inc", 2), versioned("inc", 2, sink="pager")]
    store.enqueue_notifications(rows)
    store.mark_delivered([r.id for r in rows], OLD)
    assert store.prune_history(CUT) == {"outbox": 1, "incidents": 0, "findings": 0}
    assert store.notified_incidents(["hook", "pager"], ["inc"]) == {
        ("hook", "inc"),
        ("pager", "inc"),
    }
    assert store.enqueue_notifications([versioned("inc", 1)]) == 1  # hook:inc:1 went
    v3 = [versioned("inc", 3), versioned("inc", 3, sink="pager")]
    store.enqueue_notifications(v3)
    store.mark_delivered([r.id for r in [*v3, versioned("inc", 1)]], OLD)
    # Now the current version's items are the newest: the older ones go.
    assert store.prune_history(CUT) == {"outbox": 3, "incidents": 0, "findings": 0}
    assert store.enqueue_notifications([versioned("inc", 2)]) == 1


def test_notified_incidents_names_each_sink_and_incident_with_an_item(store: Any) -> None:
    assert store.notified_incidents(["hook"], ["a"]) == set()
    rows = [versioned("a", 1), versioned("b", 2, sink="pager"), versioned("c", 1)]
    store.enqueue_notifications(rows)
    store.mark_delivered([rows[0].id], T0)
    store.mark_attempt_failed(rows[1].id, 1, T0, "HTTP 400", give_up=True)
    # Any status counts: delivered, given up, pending.
    got = store.notified_incidents(["hook", "pager"], ["a", "b", "c", "d"])
    assert got == {("hook", "a"), ("pager", "b"), ("hook", "c")}
    assert store.notified_incidents(["pager"], ["a", "c"]) == set()
    assert store.notified_incidents([], ["a"]) == set()
    assert store.notified_incidents(["hook"], []) == set()
