"""This machine's metrics through psutil: the zero-configuration source.

Every series carries ``host=<hostname>``. Gauges (every poll):

==========================================  ===============================================
``host_cpu_percent``                        CPU utilization since the previous poll, 0-100
``host_cpu_percent{cpu="N"}``               the same per logical CPU (``per_cpu=True``)
``host_load1`` / ``host_load5`` / ``host_load15``  load averages
``host_memory_used_bytes``                  memory in use
``host_memory_available_bytes``             memory available without swapping
``host_memory_percent``                     memory in use, percent
``host_swap_used_bytes``                    swap in use
``host_disk_usage_percent{mountpoint=…}``   use of each real filesystem (pseudo ones skipped,
                                            one mount per device)
``host_processes``                          number of processes
==========================================  ===============================================

Rates (per second, between two polls; the first poll emits none, nor does a poll after a counter
went backwards or the clock stepped back; a machine whose network or disk counters cannot be
read gets none of that group, logged once):

================================================================  ==============================
``host_network_receive_bytes_per_second{device=…}``               per interface, ``lo`` excluded
``host_network_transmit_bytes_per_second{device=…}``              per interface, ``lo`` excluded
``host_disk_read_bytes_per_second``                               all disks together
``host_disk_write_bytes_per_second``                              all disks together
================================================================  ==============================

CPU percent never blocks: it is psutil's ``cpu_percent(interval=None)``, primed at construction,
so each poll reports the utilization since the previous one.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Collection
from types import ModuleType
from typing import Any

import numpy as np
import psutil

from relia.signals import MetricBatch, SeriesIndex

__all__ = ["PSEUDO_FILESYSTEMS", "HostSource"]

log = logging.getLogger(__name__)

#: Filesystem types that hold no user data and are not reported.
PSEUDO_FILESYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
        "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "mqueue", "nsfs", "proc", "pstore",
        "ramfs", "rpc_pipefs", "securityfs", "squashfs", "sysfs", "tmpfs", "tracefs", "iso9660",
        "fuse.lxcfs", "fuse.gvfsd-fuse", "fuse.portal", "nfsd", "selinuxfs",
    }
)  # fmt: skip


class HostSource:
    """Gauges and rates of this machine (see the module docstring for the list).

    ``ps`` is the psutil module, or a stand-in with the same functions for tests.
    """

    def __init__(
        self,
        index: SeriesIndex,
        per_cpu: bool = False,
        name: str = "host",
        *,
        ps: ModuleType | Any = psutil,
        hostname: str | None = None,
    ) -> None:
        self.index = index
        self.per_cpu = per_cpu
        self.name = name
        self.hostname = hostname or socket.gethostname()
        self._ps = ps
        self._ids: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self._prev_ms: int | None = None
        self._prev_net: dict[str, tuple[int, int]] = {}
        self._prev_disk: tuple[int, int] | None = None
        self._unavailable_logged: set[str] = set()
        # The first interval=None call only records a starting point; prime it now so that the
        # first poll already measures something.
        ps.cpu_percent(interval=None)
        if per_cpu:
            ps.cpu_percent(interval=None, percpu=True)

    def forget(self, series_ids: Collection[int]) -> None:
        """The engine forgot these series (a disk or interface gone): asked anew if they return."""
        gone = set(series_ids)
        self._ids = {k: sid for k, sid in self._ids.items() if sid not in gone}

    def _sid(self, metric: str, **labels: str) -> int:
        """The series' id; -1 while the index refuses it (over max_series: :meth:`poll` drops
        its sample, and asks again next time)."""
        key = (metric, tuple(sorted(labels.items())))
        sid = self._ids.get(key)
        if sid is None:
            sid = self.index.get_or_add(metric, {"host": self.hostname, **labels}, source=self.name)
            if sid is None:
                return -1
            self._ids[key] = sid
        return sid

    def _disks(self) -> list[tuple[str, float]]:
        seen: set[str] = set()
        out: list[tuple[str, float]] = []
        parts = sorted(self._ps.disk_partitions(all=False), key=lambda p: len(p.mountpoint))
        for part in parts:
            if part.fstype in PSEUDO_FILESYSTEMS or not part.fstype:
                continue
            # A device mounted twice (bind mounts, containers) is one filesystem: keep the
            # shortest mount point.
            if part.device in seen:
                continue
            try:
                usage = self._ps.disk_usage(part.mountpoint)
            except OSError:  # unmounted meanwhile, or not readable by us
                continue
            seen.add(part.device)
            out.append((part.mountpoint, float(usage.percent)))
        return out

    def poll(self, now_ms: int) -> MetricBatch:
        """One sample of every gauge at ``now_ms``, plus rates since the previous poll."""
        ps = self._ps
        rows: list[tuple[int, float]] = []
        rows.append((self._sid("host_cpu_percent"), float(ps.cpu_percent(interval=None))))
        if self.per_cpu:
            per = ps.cpu_percent(interval=None, percpu=True)
            rows.extend(
                (self._sid("host_cpu_percent", cpu=str(i)), float(v)) for i, v in enumerate(per)
            )
        try:
            load1, load5, load15 = ps.getloadavg()
        except (AttributeError, OSError):  # pragma: no cover - platforms without load average
            load1 = load5 = load15 = math.nan
        rows += [
            (self._sid("host_load1"), float(load1)),
            (self._sid("host_load5"), float(load5)),
            (self._sid("host_load15"), float(load15)),
        ]
        mem = ps.virtual_memory()
        rows += [
            (self._sid("host_memory_used_bytes"), float(mem.used)),
            (self._sid("host_memory_available_bytes"), float(mem.available)),
            (self._sid("host_memory_percent"), float(mem.percent)),
            (self._sid("host_swap_used_bytes"), float(ps.swap_memory().used)),
        ]
        rows += [
            (self._sid("host_disk_usage_percent", mountpoint=mp), pct) for mp, pct in self._disks()
        ]
        rows.append((self._sid("host_processes"), float(len(ps.pids()))))
        rows += self._rates(now_ms)
        rows = [r for r in rows if r[0] >= 0]  # refused series (over max_series): dropped
        sids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        vals = np.fromiter((r[1] for r in rows), dtype=np.float64, count=len(rows))
        return MetricBatch(sids, np.full(len(rows), now_ms, dtype=np.int64), vals)

    def _unavailable(self, group: str, exc: BaseException) -> None:
        """Log once that a group of series cannot be read here; the rest is still polled."""
        if group not in self._unavailable_logged:
            self._unavailable_logged.add(group)
            log.warning(
                "host: no %s rates on this machine (%s: %s)", group, type(exc).__name__, exc
            )

    def _rates(self, now_ms: int) -> list[tuple[int, float]]:
        # A container without /proc/net/dev, or without /proc/diskstats and /sys/block, makes
        # psutil raise: that group of rates is left out, not the whole poll.
        net: dict[str, tuple[int, int]] = {}
        try:
            counters = self._ps.net_io_counters(pernic=True) or {}
        except (OSError, NotImplementedError) as exc:
            self._unavailable("network", exc)
        else:
            net = {
                nic: (int(c.bytes_recv), int(c.bytes_sent))
                for nic, c in counters.items()
                if nic != "lo"
            }
        try:
            dio = self._ps.disk_io_counters(perdisk=False)
        except (OSError, NotImplementedError) as exc:
            self._unavailable("disk", exc)
            dio = None
        disk = (int(dio.read_bytes), int(dio.write_bytes)) if dio is not None else None
        out: list[tuple[int, float]] = []
        prev_ms = self._prev_ms
        if prev_ms is not None and now_ms < prev_ms:
            # The wall clock stepped back: measure from now on, or no rate would come until
            # the clock caught up with the previous poll.
            log.warning(
                "host: the clock went back %gs; rates start again", (prev_ms - now_ms) / 1000
            )
            prev_ms = None
        if prev_ms is not None and now_ms > prev_ms:
            dt = (now_ms - prev_ms) / 1000.0
            for nic, (recv, sent) in net.items():
                before = self._prev_net.get(nic)
                if before is None or recv < before[0] or sent < before[1]:
                    continue  # new interface or counter reset: no rate this time
                out.append(
                    (
                        self._sid("host_network_receive_bytes_per_second", device=nic),
                        (recv - before[0]) / dt,
                    )
                )
                out.append(
                    (
                        self._sid("host_network_transmit_bytes_per_second", device=nic),
                        (sent - before[1]) / dt,
                    )
                )
            if disk is not None and self._prev_disk is not None:
                if disk[0] >= self._prev_disk[0] and disk[1] >= self._prev_disk[1]:
                    out.append(
                        (
                            self._sid("host_disk_read_bytes_per_second"),
                            (disk[0] - self._prev_disk[0]) / dt,
                        )
                    )
                    out.append(
                        (
                            self._sid("host_disk_write_bytes_per_second"),
                            (disk[1] - self._prev_disk[1]) / dt,
                        )
                    )
        if prev_ms is None or now_ms > prev_ms:  # the same millisecond keeps the reference
            self._prev_ms = now_ms
            self._prev_net = net
            self._prev_disk = disk
        return out
