"""A leader lease in PostgreSQL, with a fencing token.

One row of ``leader_lease`` (migration ``postgresql/0006_leader_lease.sql``) per lease name. Every
decision is one statement judged by the **database's clock** (``now()``; each statement runs in
its own transaction, so ``now()`` is when it ran), never a replica's, so replicas with skewed
clocks still agree on who holds the lease:

- :meth:`Lease.acquire` takes the lease only when it has expired (or was released), and gives the
  new holder ``token + 1``: tokens strictly increase from one holder to the next. Not even the
  same holder name takes over a lease that has not expired: two processes configured with the
  same ``replica_id`` can never both hold it.
- :meth:`Lease.renew` extends the lease only while it is still held with that token and has not
  expired; a lease that lapsed must be acquired again, with a new token.
- :meth:`Lease.is_current` says whether a token still holds the lease for more than ``margin``
  seconds more: what the outbox asks right before each send.

The lease has its own connection (autocommit), independent of the store, so a busy store cannot
delay a renewal. A failed connection is opened again on the next call.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from importlib import resources
from typing import Any

from relia.errors import StoreError

__all__ = ["DEFAULT_LEASE", "Grant", "Holder", "Lease", "LeaseUnavailable"]

#: The lease the replicas of one relia deployment compete for.
DEFAULT_LEASE = "relia-leader"

_SECONDS = "make_interval(secs => %(ttl)s)"

_ENSURE_ROW = (
    "INSERT INTO leader_lease (name, holder, token, expires_at) "
    "VALUES (%(name)s, NULL, 0, '-infinity') ON CONFLICT (name) DO NOTHING"
)
# Only an expired (or released) lease changes hands, and always to a larger token.
_ACQUIRE = (
    "UPDATE leader_lease SET holder = %(holder)s, token = token + 1, "
    f"expires_at = now() + {_SECONDS} "
    "WHERE name = %(name)s AND expires_at <= now() "
    "RETURNING token, extract(epoch FROM expires_at - now())::float8"
)
# Only the current, unexpired tenure is extended: a holder that lapsed starts a new one.
_RENEW = (
    f"UPDATE leader_lease SET expires_at = now() + {_SECONDS} "
    "WHERE name = %(name)s AND token = %(token)s AND holder = %(holder)s AND expires_at > now() "
    "RETURNING token, extract(epoch FROM expires_at - now())::float8"
)
_RELEASE = (
    "UPDATE leader_lease SET holder = NULL, expires_at = now() "
    "WHERE name = %(name)s AND token = %(token)s AND expires_at > now()"
)
_IS_CURRENT = (
    "SELECT token = %(token)s AND expires_at > now() + make_interval(secs => %(margin)s) "
    "FROM leader_lease WHERE name = %(name)s"
)
_HOLDER = (
    "SELECT holder, token, extract(epoch FROM expires_at - now())::float8, expires_at > now() "
    "FROM leader_lease WHERE name = %(name)s"
)


class LeaseUnavailable(StoreError):
    """The database could not be asked (down, unreachable, timed out): the caller cannot tell
    whether it holds the lease, and must act as if it did not once its last grant runs out."""


@dataclass(frozen=True)
class Grant:
    """The lease is held with ``token`` for ``remaining`` more seconds (by the database's clock,
    when the statement ran)."""

    token: int
    remaining: float


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: ``holder`` (None once released), its ``token``, seconds left (negative
    once expired) and whether it is held now."""

    holder: str | None
    token: int
    remaining: float
    held: bool


def schema_sql() -> str:
    """The text of the PostgreSQL migration that creates ``leader_lease``."""
    pkg = resources.files("relia.store.migrations").joinpath("postgresql")
    return pkg.joinpath("0006_leader_lease.sql").read_text(encoding="utf-8")


class Lease:
    """The lease ``name`` in the database at ``dsn``, competed for as ``holder`` for ``ttl``
    seconds at a time. Thread-safe (one connection, used under a lock); :meth:`close` it."""

    def __init__(
        self,
        dsn: str,
        holder: str,
        ttl: float,
        *,
        name: str = DEFAULT_LEASE,
        timeout: float = 2.0,
    ) -> None:
        if ttl <= 0:
            raise ValueError("the lease ttl must be positive")
        self.dsn = dsn
        self.holder = holder
        self.ttl = float(ttl)
        self.name = name
        # Bounds every call: a renewal that hangs longer than this is a failed renewal.
        self.timeout = max(0.1, float(timeout))
        self._lock = threading.Lock()
        self._conn: Any = None
        self._row_ready = False

    # -- the statements ------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Create ``leader_lease`` if missing (the store's migrations normally do)."""
        self._execute(schema_sql(), None, fetch=False)

    def acquire(self) -> Grant | None:
        """Take the lease if it is free (expired or released): a :class:`Grant` with a token
        larger than any before, or None while someone (even this holder) holds it."""
        if not self._row_ready:
            self._execute(_ENSURE_ROW, {"name": self.name}, fetch=False)
            self._row_ready = True
        row = self._execute(_ACQUIRE, {"name": self.name, "holder": self.holder, "ttl": self.ttl})
        return Grant(int(row[0]), float(row[1])) if row is not None else None

    def renew(self, token: int) -> Grant | None:
        """Extend the tenure of ``token`` by ``ttl``; None when it no longer holds the lease
        (expired, taken over, released)."""
        row = self._execute(
            _RENEW, {"name": self.name, "holder": self.holder, "token": token, "ttl": self.ttl}
        )
        return Grant(int(row[0]), float(row[1])) if row is not None else None

    def release(self, token: int) -> None:
        """Give the lease up now (a clean shutdown) so another replica need not wait for it to
        expire; nothing happens if ``token`` no longer holds it."""
        self._execute(_RELEASE, {"name": self.name, "token": token}, fetch=False)

    def is_current(self, token: int, margin: float = 0.0) -> bool:
        """Whether ``token`` holds the lease now and for more than ``margin`` more seconds, by
        the database's clock. Raises :class:`LeaseUnavailable` when it cannot be asked."""
        row = self._execute(_IS_CURRENT, {"name": self.name, "token": token, "margin": margin})
        return bool(row[0]) if row is not None else False

    def current(self) -> Holder | None:
        """Who holds the lease (None: nobody ever did)."""
        row = self._execute(_HOLDER, {"name": self.name})
        if row is None:
            return None
        return Holder(row[0], int(row[1]), float(row[2]), bool(row[3]))

    def close(self) -> None:
        """Close the connection (idempotent)."""
        with self._lock:
            self._drop()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lease(name={self.name!r}, holder={self.holder!r}, ttl={self.ttl:g})"

    # -- internals -----------------------------------------------------------------------

    def _connect(self) -> Any:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        from relia.store.postgres import TCP_KEEPALIVE

        ms = int(self.timeout * 1000)
        # A statement (or a lock wait) that takes longer than the timeout fails rather than
        # holding the caller past the point where its lease could have lapsed. Added to the
        # DSN's own options (or PGOPTIONS), never replacing them: a search_path set there is
        # where the store put the lease table.
        timeouts = f"-c statement_timeout={ms} -c lock_timeout={ms}"
        given_parts = conninfo_to_dict(self.dsn)
        given = given_parts.get("options")
        if given is None:
            given = os.environ.get("PGOPTIONS")
        keepalive: dict[str, Any] = {k: v for k, v in TCP_KEEPALIVE.items() if k not in given_parts}
        return psycopg.connect(
            self.dsn,
            autocommit=True,
            connect_timeout=max(1, int(round(self.timeout))),
            options=f"{given} {timeouts}" if given else timeouts,
            application_name=f"relia-lease {self.holder}"[:63],
            **keepalive,
        )

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - a broken connection; nothing to do about it
                pass

    def _execute(self, sql: str, params: dict[str, Any] | None, *, fetch: bool = True) -> Any:
        import psycopg

        with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                cur = self._conn.execute(sql, params)
                return cur.fetchone() if fetch else None
            except psycopg.errors.UndefinedTable as e:
                raise StoreError(
                    "the leader_lease table is missing (the store's migration 0006 was not "
                    "applied)",
                    where=self._where(),
                ) from e
            except psycopg.Error as e:
                # The connection may be unusable (server restarted): open a new one next time.
                self._drop()
                self._row_ready = False
                raise LeaseUnavailable(
                    f"the database did not answer: {type(e).__name__}: {str(e).strip()[:200]}",
                    where=self._where(),
                ) from e

    def _where(self) -> str:
        # Never the DSN: it may hold a password.
        return f"lease {self.name}"
