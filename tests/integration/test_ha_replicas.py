"""HA end to end: ``relia up`` replicas (real subprocesses) on one real PostgreSQL database, a
webhook receiver in the test counting what arrives.

(a) SIGKILL the leader while a notification waits (the receiver refuses it): another replica
    leads within 15 s, and every notification is accepted once, none twice.
(b) SIGSTOP the leader past its lease while a notification waits: the other replica takes over;
    SIGCONT the old one: it sends nothing (no request with its token after it was resumed) and
    reports itself as a follower.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.http_receiver import HttpReceiver
from tests.integration.up_process import ReliaProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "ha-test-secret"


@dataclass
class Request:
    at: float
    dedup_key: str
    token: int | None
    status: str  # the incident's status in the notification
    answered: int


class Receiver:
    """relia's webhook on loopback: every request as a :class:`Request`; 503 while ``down``."""

    def __init__(self) -> None:
        self.down = False
        self._http = HttpReceiver(lambda: 503 if self.down else 200)
        self.url = self._http.url + "/hook"

    def all(self) -> list[Request]:
        out = []
        for post in self._http.posts:
            doc = json.loads(post.body)
            token = post.headers.get("X-Relia-Fencing-Token")
            out.append(
                Request(
                    post.at,
                    doc["dedup_key"],
                    int(token) if token is not None else None,
                    doc["incident"]["status"],
                    post.answered,
                )
            )
        return out

    def accepted(self) -> list[Request]:
        return [r for r in self.all() if r.answered == 200]

    def close(self) -> None:
        self._http.close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


class Replica(ReliaProcess):
    """One ``relia up`` replica, with its own log file (``log``) to feed anomalies into."""

    def __init__(self, config: Path, log: Path) -> None:
        super().__init__(config)
        self.log = log

    def health(self) -> dict[str, Any]:
        got: dict[str, Any] = httpx.get(self.url + "/healthz", timeout=5).json()
        return got

    def leads(self) -> bool:
        return bool(self.health()["ha"]["leader"])

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=5).text
        m = re.search(rf"^{re.escape(name)}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    def anomaly(self, text: str) -> None:
        with self.log.open("a") as f:
            f.write(f"2024-05-01T12:00:01Z ERROR api: {text}\n")


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 30.0) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if pred():
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass  # a replica being stopped or killed
        time.sleep(0.05)
    raise AssertionError(f"not reached in {timeout:g}s: {what}")


def start_replicas(
    tmp_path: Path, dsn: str, receiver: Receiver, n: int, procs: list[Replica]
) -> list[Replica]:
    out = []
    for i in range(n):
        log = tmp_path / f"app{i}.log"
        with log.open("w") as f:
            for k in range(30):
                f.write(f"2024-05-01T12:00:00Z INFO api: GET /items/{k} took {k % 97}ms\n")
        config = tmp_path / f"relia{i}.yaml"
        config.write_text(
            f"data_dir: {tmp_path / f'data{i}'}\n"
            f"store: '{dsn}'\n"
            "interval: 0.1\n"
            "host: {enabled: false}\n"
            "api: {port: 0}\n"
            f"ha: {{lease_ttl: 3s, renew_interval: 1s, replica_id: r{i}}}\n"
            "logs:\n"
            "  window: 1s\n"
            "  warmup_lines: 20\n"
            f"  files: [{{path: {log}, name: app{i}}}]\n"
            "incidents: {resolve_after: 2s}\n"
            "notify:\n"
            "  base_delay: 0.2\n"
            "  max_delay: 0.5\n"
            "  breaker_cooldown: 0.5\n"
            f"  sinks: [{{name: hook, type: webhook, url: '{receiver.url}', "
            "secret_env: HA_TEST_HOOK_SECRET}]\n"
        )
        procs.append(Replica(config, log))
        out.append(procs[-1])
    return out


def the_leader(replicas: list[Replica], timeout: float = 15.0) -> Replica:
    found: list[Replica] = []

    def one() -> bool:
        found[:] = [r for r in replicas if r.leads()]
        return len(found) == 1

    wait_until(one, "exactly one leader", timeout)
    return found[0]


def outbox(dsn: str) -> dict[str, str]:
    import psycopg

    with psycopg.connect(dsn) as conn:
        return dict(conn.execute("SELECT id, status FROM outbox").fetchall())


def test_sigkill_the_leader_another_leads_nothing_lost_nothing_twice(
    tmp_path: Path, postgres_dsn: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HA_TEST_HOOK_SECRET", SECRET)
    procs: list[Replica] = []
    try:
        replicas = start_replicas(tmp_path, postgres_dsn, receiver, 3, procs)
        leader = the_leader(replicas)
        followers = [r for r in replicas if r is not leader]
        # 1. An incident from a follower's findings, correlated and sent by the leader.
        followers[0].anomaly("payment backend refused the connection")
        wait_until(lambda: {r.status for r in receiver.accepted()} >= {"open"}, "first firing", 60)
        wait_until(lambda: len(receiver.accepted()) >= 2, "first resolved", 20)
        # 2. The receiver refuses; a second incident's notification waits at the leader.
        receiver.down = True
        followers[1].anomaly("disk quota exceeded on /var")
        wait_until(lambda: leader.metric("relia_notify_retried_total") >= 1, "a refused send")
        leader.kill()
        killed_at = time.monotonic()
        receiver.down = False
        # 3. A third incident while nobody leads.
        followers[0].anomaly("certificate expired for api.internal")
        took = wait_until(lambda: any(r.leads() for r in followers), "a new leader", 15.0)
        new_leader = the_leader(followers)
        assert new_leader.health()["ha"]["fencing_token"] > 1
        assert took < 15.0 and time.monotonic() - killed_at < 15.0

        def all_delivered() -> bool:
            box = outbox(postgres_dsn)
            resolved = {r.dedup_key.split(":")[1] for r in receiver.accepted()
                        if r.status == "resolved"}  # fmt: skip
            return len(resolved) == 3 and all(s == "delivered" for s in box.values())

        # Three incidents, each resolved in the end (the one that opened and ended while nobody
        # led may be sent once, already resolved).
        wait_until(all_delivered, "every notification delivered", 40)
        time.sleep(1.5)  # a duplicate would show up by now
        keys = [r.dedup_key for r in receiver.accepted()]
        assert sorted(keys) == sorted(outbox(postgres_dsn)), "lost or extra notifications"
        assert len(keys) == len(set(keys)), f"sent twice: {keys}"
        assert len({k.split(":")[1] for k in keys}) == 3
        for r in followers:
            r.stop()
    finally:
        for p in procs:
            p.ensure_gone()


def test_sigstop_the_leader_the_resumed_one_cannot_send(
    tmp_path: Path, postgres_dsn: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HA_TEST_HOOK_SECRET", SECRET)
    procs: list[Replica] = []
    stopped: Replica | None = None
    try:
        replicas = start_replicas(tmp_path, postgres_dsn, receiver, 2, procs)
        old = the_leader(replicas)
        new = next(r for r in replicas if r is not old)
        old_token = old.health()["ha"]["fencing_token"]
        # A notification waits at the leader (the receiver refuses it) when it freezes.
        receiver.down = True
        new.anomaly("payment backend refused the connection")
        wait_until(lambda: old.metric("relia_notify_retried_total") >= 1, "a refused send")
        assert {r.token for r in receiver.all()} == {old_token}
        old.proc.send_signal(signal.SIGSTOP)
        stopped = old
        took = wait_until(new.leads, "the other replica leads", 15.0)
        new_token = new.health()["ha"]["fencing_token"]
        assert new_token > old_token
        wait_until(lambda: any(r.token == new_token for r in receiver.all()), "new leader sends")
        # Resumed while the receiver still refuses: the old leader would retry if it could.
        old.proc.send_signal(signal.SIGCONT)
        stopped = None
        resumed_at = time.monotonic()
        wait_until(lambda: not old.leads(), "the old leader reports itself a follower", 5)
        time.sleep(2.5)  # several of its retry rounds and renewals
        receiver.down = False
        wait_until(lambda: any(r.token == new_token for r in receiver.accepted()), "delivered", 20)
        time.sleep(1.0)
        late = [r for r in receiver.all() if r.at >= resumed_at and r.token != new_token]
        assert late == [], f"the resumed leader sent: {late}"
        health = old.health()["ha"]
        assert health["leader"] is False and health["fencing_token"] is None
        assert old.metric("relia_leader") == 0 and new.metric("relia_leader") == 1
        assert took < 15.0
        keys = [r.dedup_key for r in receiver.accepted()]
        assert len(keys) == len(set(keys)), f"sent twice: {keys}"
        for r in replicas:
            r.stop()
    finally:
        if stopped is not None:
            stopped.proc.send_signal(signal.SIGCONT)
        for p in procs:
            p.ensure_gone()


def test_a_second_replica_on_the_same_data_dir_is_refused(
    tmp_path: Path, postgres_dsn: str
) -> None:
    # With a PostgreSQL store no store-file lock catches two replicas started from one
    # directory: they shared one remote-write WAL, and one's commit lost the other's samples.
    import subprocess
    import sys

    config = tmp_path / "relia.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\nstore: '{postgres_dsn}'\n"
        "host: {enabled: false}\napi: {port: 0}\n"
    )
    first = ReliaProcess(config)
    try:
        second = subprocess.run(
            [sys.executable, "-m", "relia", "up", "-c", str(config)],
            capture_output=True,
            text=True,
            timeout=60,  # a second relia that starts runs until killed here
        )
    finally:
        first.stop()
        first.ensure_gone()
    assert second.returncode == 2, second.stderr
    # The one error line comes last, after relia up's own log lines (log_level info).
    assert second.stderr.endswith(
        f"\nrelia: error: {tmp_path / 'data' / 'wal'}: the WAL is in use by another relia "
        f"(process {first.proc.pid}): give each replica its own data_dir (or ingest.wal_dir)\n"
    )
    assert second.stderr.count("relia: error:") == 1 and "Traceback" not in second.stderr
