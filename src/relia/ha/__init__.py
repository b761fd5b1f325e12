"""High availability: several ``relia up`` replicas on one PostgreSQL store, one leader at a time.

- :mod:`relia.ha.lease`: the lease row in PostgreSQL (database clock, fencing token);
- :mod:`relia.ha.leader`: :class:`LeaderElector`, the thread that holds it, and the fence the
  outbox checks before each send;
- :mod:`relia.ha.duties`: what only the leader runs (incident correlation, notification delivery).

See ``docs/ha.md``.
"""

from __future__ import annotations

from relia.ha.leader import LeaderElector, LeaderMetrics
from relia.ha.lease import DEFAULT_LEASE, Grant, Holder, Lease, LeaseUnavailable

__all__ = [
    "DEFAULT_LEASE",
    "Grant",
    "Holder",
    "LeaderElector",
    "LeaderMetrics",
    "Lease",
    "LeaseUnavailable",
]
