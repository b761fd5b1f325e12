"""A corrupt checkpoint is refused, never restored into a model the kernels would index out of
bounds with (they do no bounds checks: that was a segfault)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from relia.detect import available, create
from relia.detect.checkpoint import pack, unpack
from relia.engine.local import DetectorShard
from relia.errors import DetectorError

_TS = np.arange(300, dtype=np.int64) * 60_000
_VALUES = np.sin(np.arange(300) / 5.0) * 10 + 50


def _good(name: str) -> bytes:
    shard = DetectorShard(name)
    shard.process(np.full(len(_TS), 7, np.int64), _TS, _VALUES)
    return shard.checkpoints()[7]


def test_a_flipped_bit_anywhere_is_refused() -> None:
    blob = _good("mad")
    for i in range(len(blob)):
        for bit in (0, 5):
            bad = bytearray(blob)
            bad[i] ^= 1 << bit
            with pytest.raises(DetectorError):
                create("mad").load_state_dict(unpack(bytes(bad)))


def test_the_bit_flip_of_the_audit_is_refused_and_the_series_starts_afresh(
    caplog: pytest.LogCaptureFixture,
) -> None:
    blob = bytearray(_good("mad"))
    blob[len(blob) - 32 + 5] ^= 0x01  # the ring position of mad
    shard = DetectorShard("mad")
    with caplog.at_level(logging.WARNING):
        assert shard.restore({7: bytes(blob)}) == 0
    assert "checksum" in caplog.text
    out = shard.process(np.full(3, 7, np.int64), _TS[:3] + 10**9, _VALUES[:3])
    assert len(out) == 3


@pytest.mark.parametrize(("pos", "count"), [(128, 10), (1000, 10), (-1, 10), (0, 129), (0, -1)])
def test_mad_ring_out_of_range_is_refused(pos: int, count: int) -> None:
    ck = unpack(_good("mad"))
    ck["state"]["meta"][:] = [pos, count]
    with pytest.raises(DetectorError, match="corrupt"):
        create("mad").load_state_dict(unpack(pack(ck)))


@pytest.mark.parametrize("name", ["default", "adaptive"])
def test_adaptive_negative_or_nan_surprise_is_refused(name: str) -> None:
    for value in (-1e18, -1.0, np.nan, np.inf):
        ck = unpack(_good(name))
        ck["state"]["st"][5] = value  # the smoothed surprise: a histogram bin
        with pytest.raises(DetectorError, match="corrupt"):
            create(name).load_state_dict(unpack(pack(ck)))


_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from relia.detect.checkpoint import pack, unpack
    from relia.engine.local import DetectorShard

    name = sys.argv[1]
    ts = np.arange(300, dtype=np.int64) * 60_000
    v = np.sin(np.arange(300) / 5.0) * 10 + 50
    good = DetectorShard(name)
    good.process(np.full(300, 7, np.int64), ts, v)
    base = unpack(good.checkpoints()[7])
    cases = restored = 0
    for key, arr in base["state"].items():
        for idx in range(arr.size):
            for val in (-1e18, -1.0, 1e12, 1000.0, float("nan"), float("inf")):
                ck = unpack(pack(base))
                flat = ck["state"][key].reshape(-1)
                if flat.dtype.kind in "iu":
                    info = np.iinfo(flat.dtype)
                    if not np.isfinite(val):
                        continue
                    val = min(max(val, info.min), info.max)
                flat[idx] = val
                shard = DetectorShard(name)
                restored += shard.restore({7: pack(ck)})
                shard.process(np.full(5, 7, np.int64), ts[:5] + 300 * 60_000, v[:5])
                cases += 1
    print(name, cases, restored)
    """
)


@pytest.mark.parametrize("name", available())
def test_out_of_range_state_values_never_crash_the_process(name: str) -> None:
    # In a child process: before the fix, this was a segfault (rc -11) of the whole engine.
    env = dict(os.environ)
    env.setdefault("NUMBA_CACHE_DIR", "/tmp/relia-test-numba")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, name],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(name)
