"""HostSource: gauges and counter rates of this machine, real and with a stand-in psutil."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from relia.signals import MetricBatch, SeriesIndex, describe
from relia.sources.base import MetricSource
from relia.sources.host import HostSource


class FakePsutil:
    """The few psutil functions HostSource calls, with counters the test moves forward."""

    def __init__(self) -> None:
        self.cpu_calls: list[bool] = []
        self.recv = {"eth0": 1000, "lo": 5, "wlan0": 0}
        self.sent: dict[str, int] = {}  # bytes sent per interface; twice recv when not here
        self.read = 10_000
        self.write = 0
        self.has_disks = True

    def cpu_percent(self, interval: float | None = None, percpu: bool = False) -> Any:
        assert interval is None  # never blocks
        self.cpu_calls.append(percpu)
        return [10.0, 30.0] if percpu else 20.0

    def getloadavg(self) -> tuple[float, float, float]:
        return (0.5, 0.25, 0.125)

    def virtual_memory(self) -> Any:
        return SimpleNamespace(used=4_000, available=6_000, percent=40.0)

    def swap_memory(self) -> Any:
        return SimpleNamespace(used=123)

    def disk_partitions(self, all: bool = False) -> list[Any]:
        part = SimpleNamespace
        return [
            part(device="/dev/sda1", mountpoint="/data/bind", fstype="ext4"),
            part(device="/dev/sda1", mountpoint="/data", fstype="ext4"),
            part(device="tmpfs", mountpoint="/run", fstype="tmpfs"),
            part(device="/dev/loop0", mountpoint="/snap/x", fstype="squashfs"),
            part(device="/dev/sdb1", mountpoint="/gone", fstype="xfs"),
            part(device="/dev/sdb1", mountpoint="/srv/sdb", fstype="xfs"),
            part(device="none", mountpoint="/x", fstype=""),
        ]

    def disk_usage(self, path: str) -> Any:
        if path == "/gone":
            raise PermissionError(path)
        return SimpleNamespace(percent=55.5)

    def pids(self) -> list[int]:
        return [1, 2, 3]

    def net_io_counters(self, pernic: bool = False) -> dict[str, Any]:
        return {
            nic: SimpleNamespace(bytes_recv=v, bytes_sent=self.sent.get(nic, 2 * v))
            for nic, v in self.recv.items()
        }

    def disk_io_counters(self, perdisk: bool = False) -> Any:
        if not self.has_disks:  # psutil's answer on a machine (container) without disks
            return None
        return SimpleNamespace(read_bytes=self.read, write_bytes=self.write)


def by_name(index: SeriesIndex, batch: MetricBatch) -> dict[str, float]:
    cols = (batch.series_id.tolist(), batch.value.tolist())
    return {describe(index.key(s)): v for s, v in zip(*cols, strict=True)}


def test_gauges_and_rates_with_fake_psutil() -> None:
    ps = FakePsutil()
    index = SeriesIndex()
    source = HostSource(index, per_cpu=True, ps=ps, hostname="box")
    assert ps.cpu_calls == [False, True]  # primed at construction
    first = by_name(index, source.poll(1_000_000))
    assert first['host_cpu_percent{host="box"}'] == 20.0
    assert first['host_cpu_percent{cpu="1",host="box"}'] == 30.0
    assert first['host_load15{host="box"}'] == 0.125
    assert first['host_memory_used_bytes{host="box"}'] == 4000
    assert first['host_memory_available_bytes{host="box"}'] == 6000
    assert first['host_memory_percent{host="box"}'] == 40.0
    assert first['host_swap_used_bytes{host="box"}'] == 123
    assert first['host_processes{host="box"}'] == 3
    disks = [k for k in first if k.startswith("host_disk_usage_percent")]
    # /data/bind is /data mounted again; /srv/sdb is reported as /gone cannot be read
    assert disks == [
        'host_disk_usage_percent{host="box",mountpoint="/data"}',
        'host_disk_usage_percent{host="box",mountpoint="/srv/sdb"}',
    ]
    assert not any("per_second" in k for k in first)  # no rates on the first poll

    ps.recv = {"eth0": 3000, "lo": 99, "wlan0": 0}
    ps.read = 14_000
    second = by_name(index, source.poll(1_002_000))  # 2 s later
    assert second['host_network_receive_bytes_per_second{device="eth0",host="box"}'] == 1000.0
    assert second['host_network_transmit_bytes_per_second{device="eth0",host="box"}'] == 2000.0
    assert second['host_network_receive_bytes_per_second{device="wlan0",host="box"}'] == 0.0
    assert not any('device="lo"' in k for k in second)
    assert second['host_disk_read_bytes_per_second{host="box"}'] == 2000.0
    assert second['host_disk_write_bytes_per_second{host="box"}'] == 0.0

    ps.recv = {"eth0": 10, "lo": 99, "wlan0": 0}  # eth0's counter reset
    third = by_name(index, source.poll(1_003_000))
    assert not any('device="eth0"' in k for k in third)
    assert third['host_disk_read_bytes_per_second{host="box"}'] == 0.0


def test_real_host_is_sane_and_ids_are_stable() -> None:
    index = SeriesIndex()
    source = HostSource(index)
    assert isinstance(source, MetricSource) and source.name == "host"
    now = int(time.time() * 1000)
    first = source.poll(now)
    time.sleep(0.05)
    second = source.poll(now + 50)
    for batch in (first, second):
        assert len(batch) >= 8
        assert np.all(np.isfinite(batch.value))
        assert np.all(batch.value >= 0)
    names = by_name(index, first)
    cpu = next(v for k, v in names.items() if k.startswith("host_cpu_percent{"))
    assert 0.0 <= cpu <= 100.0
    assert any(k.startswith("host_memory_used_bytes{") for k in names)
    assert all('host="' in k for k in names)
    assert set(first.series_id.tolist()) <= set(second.series_id.tolist())
    assert np.all(second.ts == now + 50)
    assert len(set(index)) == len(set(second.series_id.tolist()) | set(first.series_id.tolist()))


def rates(index: SeriesIndex, batch: MetricBatch) -> dict[str, float]:
    return {k: v for k, v in by_name(index, batch).items() if "per_second" in k}


def test_a_counter_that_went_backwards_gives_no_rate_this_time() -> None:
    ps = FakePsutil()
    index = SeriesIndex()
    source = HostSource(index, ps=ps, hostname="box")
    source.poll(1_000_000)
    ps.recv = {"eth0": 3000, "lo": 5, "wlan0": 10}
    ps.sent = {"eth0": 1}  # only eth0's transmit counter restarted
    ps.read, ps.write = 12_000, 0
    got = rates(index, source.poll(1_001_000))
    assert not any('device="eth0"' in k for k in got)
    assert got['host_network_transmit_bytes_per_second{device="wlan0",host="box"}'] == 20.0
    source.poll(1_002_000)
    ps.write = 500
    source.poll(1_003_000)
    ps.write = 100  # only the write counter restarted
    ps.read = 30_000
    assert not any("disk" in k for k in rates(index, source.poll(1_004_000)))


def test_polls_at_the_same_time_give_no_rates_and_keep_the_reference() -> None:
    ps = FakePsutil()
    index = SeriesIndex()
    source = HostSource(index, ps=ps, hostname="box")
    source.poll(1_000_000)
    ps.recv = {"eth0": 2000, "lo": 5, "wlan0": 0}
    assert rates(index, source.poll(1_000_000)) == {}  # same millisecond: no division by zero
    ps.recv = {"eth0": 5000, "lo": 5, "wlan0": 0}
    got = rates(index, source.poll(1_002_000))
    # measured from the first poll, the last one whose time moved forward
    assert got['host_network_receive_bytes_per_second{device="eth0",host="box"}'] == 2000.0


def test_rates_start_again_after_the_clock_steps_back() -> None:
    ps = FakePsutil()
    index = SeriesIndex()
    source = HostSource(index, ps=ps, hostname="box")
    source.poll(10_000_000)
    back = 10_000_000 - 3_600_000  # the wall clock steps back an hour
    ps.recv = {"eth0": 3000, "lo": 5, "wlan0": 0}
    assert rates(index, source.poll(back)) == {}  # no rate across the step
    ps.recv = {"eth0": 6000, "lo": 5, "wlan0": 0}
    ps.read = 13_000
    got = rates(index, source.poll(back + 15_000))
    # measured from the poll after the step, not an hour later when the clock caught up
    assert got['host_network_receive_bytes_per_second{device="eth0",host="box"}'] == 200.0
    assert got['host_disk_read_bytes_per_second{host="box"}'] == 200.0


def test_a_machine_without_disk_counters_still_reports_the_rest() -> None:
    ps = FakePsutil()
    ps.has_disks = False
    index = SeriesIndex()
    source = HostSource(index, ps=ps, hostname="box")
    source.poll(1_000_000)
    got = rates(index, source.poll(1_001_000))
    assert got['host_network_receive_bytes_per_second{device="eth0",host="box"}'] == 0.0
    assert not any("disk" in k for k in got)


def test_series_over_the_limit_are_dropped_and_the_rest_of_the_poll_kept() -> None:
    ps = FakePsutil()
    index = SeriesIndex(max_series=3)
    source = HostSource(index, ps=ps, hostname="box", name="host")
    first = by_name(index, source.poll(1_000_000))
    # The first three series polled: cpu and two loads; the rest is refused.
    assert sorted(first) == [
        'host_cpu_percent{host="box"}',
        'host_load1{host="box"}',
        'host_load5{host="box"}',
    ]
    assert first['host_cpu_percent{host="box"}'] == 20.0
    ps.read = 14_000
    second = source.poll(1_002_000)
    assert by_name(index, second) == first
    assert len(index) == 3 and index.refused()["host"] > 0


def test_forgotten_series_are_registered_anew_when_polled_again() -> None:
    index = SeriesIndex()
    source = HostSource(index, ps=FakePsutil(), hostname="box")
    first = set(source.poll(1_000_000).series_id.tolist())
    index.forget(first)
    source.forget(first)
    assert len(index) == 0
    again = set(source.poll(1_001_000).series_id.tolist())
    assert first <= again and first <= set(index)


def test_a_machine_whose_network_and_disk_counters_cannot_be_read_reports_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Sandboxed(FakePsutil):
        def net_io_counters(self, pernic: bool = False) -> dict[str, Any]:
            raise FileNotFoundError(2, "No such file or directory", "/proc/net/dev")

        def disk_io_counters(self, perdisk: bool = False) -> Any:
            raise NotImplementedError("couldn't find /proc/diskstats nor /sys/block")

    index = SeriesIndex()
    source = HostSource(index, ps=Sandboxed(), hostname="box")
    with caplog.at_level(logging.WARNING, logger="relia.sources.host"):
        polls = [by_name(index, source.poll(1_000_000 + i * 1000)) for i in range(3)]
    for got in polls:
        assert got['host_cpu_percent{host="box"}'] == 20.0
        assert got['host_memory_used_bytes{host="box"}'] == 4000.0
        assert got['host_processes{host="box"}'] == 3.0
        assert not any("network" in k or "disk_read" in k or "disk_write" in k for k in got)
    logged = [r.getMessage() for r in caplog.records]
    # once each, with the reason
    assert len(logged) == 2
    assert "network" in logged[0] and "/proc/net/dev" in logged[0]
    assert "disk" in logged[1] and "NotImplementedError" in logged[1]
