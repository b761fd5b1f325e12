from __future__ import annotations

import asyncio
import struct
import warnings
from pathlib import Path

import cramjam
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from relia.ingest.api import remote_write_router
from relia.ingest.queue import IngestQueue
from relia.ingest.remote_write import RemoteWriteDecoder
from relia.ingest.source import IngestMetrics
from relia.signals import SeriesIndex
from tests.ingest.prompb import encode, field, varint

with warnings.catch_warnings():
    # Starlette >= 1.x warns that TestClient wants the httpx2 package; httpx works the same.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

T0 = 1_700_000_000_000
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


class Rig:
    def __init__(
        self,
        tmp: Path,
        max_samples: int = 100,
        max_body: int = 1 << 20,
        max_series: int | None = None,
    ) -> None:
        self.index = SeriesIndex(max_series=max_series)
        self.decoder = RemoteWriteDecoder(self.index)
        self.queue = IngestQueue(max_samples, tmp)
        self.registry = CollectorRegistry()
        self.metrics = IngestMetrics(self.registry)
        app = FastAPI()
        app.include_router(
            remote_write_router(
                self.queue, self.decoder, max_body_bytes=max_body, metrics=self.metrics
            )
        )
        self.client = TestClient(app)

    def post(self, body: bytes, headers: dict[str, str] | None = None) -> object:
        return self.client.post("/api/v1/write", content=body, headers=headers or HEADERS)

    def count(self, code: str) -> float:
        v = self.registry.get_sample_value("relia_remote_write_requests_total", {"code": code})
        return v or 0.0


def _body(n: int, name: str = "m") -> bytes:
    return encode([({"__name__": name, "i": str(i)}, [(T0, float(i))]) for i in range(n)])


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


def test_accepts_a_write(rig: Rig) -> None:
    r = rig.post(_body(10))
    assert r.status_code == 204  # type: ignore[attr-defined]
    assert rig.queue.samples == 10 and len(rig.index) == 10
    assert rig.count("204") == 1
    assert rig.registry.get_sample_value("relia_remote_write_samples_total") == 10


@pytest.mark.parametrize("inline", [True, False])
def test_small_bodies_decode_inline_large_ones_in_a_thread(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, inline: bool
) -> None:
    import threading

    import relia.ingest.api as api

    threads: list[str] = []
    real = rig.decoder.decode

    def decode(body: bytes, max_samples: int | None = None) -> object:
        threads.append(threading.current_thread().name)
        return real(body, max_samples)

    monkeypatch.setattr(rig.decoder, "decode", decode)
    monkeypatch.setattr(api, "INLINE_BODY_BYTES", 1 << 20 if inline else 0)
    r = rig.post(_body(10))
    assert r.status_code == 204  # type: ignore[attr-defined]
    assert rig.queue.samples == 10
    assert len(threads) == 1
    assert ("AnyIO worker" in threads[0]) is not inline, threads


def test_bad_payloads_are_400_and_keep_nothing(rig: Rig) -> None:
    for body in (b"\x05nonsense", bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x01")), b""):
        r = rig.post(body)
        assert r.status_code == 400, body  # type: ignore[attr-defined]
        assert "request body" in r.text or "empty body" in r.text  # type: ignore[attr-defined]
    r = rig.post(encode([({"job": "x"}, [(T0, 1.0)])]))
    assert r.status_code == 400 and "__name__" in r.text  # type: ignore[attr-defined]
    r = rig.post(encode([({"__name__": "x"}, [(T0, 1.0), (T0 - 1, 2.0)])]))
    assert r.status_code == 400 and "increasing" in r.text  # type: ignore[attr-defined]
    assert rig.queue.samples == 0 and len(rig.index) == 0 and rig.queue.requests == 0


def test_a_far_future_sample_is_400_naming_its_series_and_nothing_is_kept(rig: Rig) -> None:
    import time

    now = time.time_ns() // 1_000_000
    century = now + 100 * 365 * 86_400_000
    body = encode(
        [({"__name__": "real"}, [(now, 1.0)]), ({"__name__": "poison"}, [(century, 1.0)])]
    )
    r = rig.post(body)
    assert r.status_code == 400  # type: ignore[attr-defined]
    text = r.text  # type: ignore[attr-defined]
    assert "timeseries 1 {__name__='poison'}" in text and str(century) in text
    assert "ingest.max_future" in text and "nothing in this request was stored" in text
    assert rig.queue.samples == 0 and len(rig.index) == 0
    # What is only a little ahead (clocks differ by seconds) is taken.
    r = rig.post(encode([({"__name__": "real"}, [(now + 5_000, 1.0)])]))
    assert r.status_code == 204  # type: ignore[attr-defined]


def test_a_refused_request_says_so_and_names_the_timeseries(rig: Rig) -> None:
    r = rig.post(encode([({"__name__": "ok"}, [(T0, 1.0)]), ({"job": "x"}, [(T0, 1.0)])]))
    assert r.status_code == 400  # type: ignore[attr-defined]
    text = r.text  # type: ignore[attr-defined]
    assert "timeseries 1 {job='x'}" in text and "nothing in this request was stored" in text
    r = rig.post(bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x01")))
    assert "nothing in this request was stored" in r.text  # type: ignore[attr-defined]


def test_every_error_answer_is_json_with_a_detail(tmp_path: Path) -> None:
    rig = Rig(tmp_path, max_samples=5, max_body=1000)
    answers = [
        rig.post(b"\x05nonsense"),  # 400
        rig.post(_body(1), {**HEADERS, "Content-Encoding": "gzip"}),  # 415
        rig.post(b"x" * 1001),  # 413
        rig.post(_body(6)),  # 413: more samples than the queue holds
    ]
    assert rig.post(_body(5)).status_code == 204  # type: ignore[attr-defined]
    full = rig.post(_body(1, "n"))  # 503: the queue is full
    assert full.headers["retry-after"]  # type: ignore[attr-defined]
    for r in [*answers, full]:
        assert r.headers["content-type"] == "application/json"  # type: ignore[attr-defined]
        assert isinstance(r.json()["detail"], str), r  # type: ignore[attr-defined]
    codes = [r.status_code for r in [*answers, full]]  # type: ignore[attr-defined]
    assert codes == [400, 415, 413, 413, 503]


def test_a_varint_overflowing_64_bits_is_a_400_not_a_500(rig: Rig) -> None:
    # The __name__ label's tag in ten bytes, the last carrying bit 64: it used to reach the label
    # decoder, which read another field number than the kernel and failed with a KeyError (500).
    label = field(1, 2, b"__name__") + field(2, 2, b"x")
    sample = field(1, 1, struct.pack("<d", 1.0)) + field(2, 0, varint(T0))
    series = b"\x8a" + b"\x80" * 8 + b"\x02" + varint(len(label)) + label + field(2, 2, sample)
    r = rig.post(bytes(cramjam.snappy.compress_raw(field(1, 2, series))))
    assert r.status_code == 400 and "over-long varint" in r.text  # type: ignore[attr-defined]
    assert rig.queue.samples == 0 and len(rig.index) == 0


def test_a_client_gone_before_its_body_is_complete_is_counted_not_a_server_error(
    tmp_path: Path,
) -> None:
    # It raised Starlette's ClientDisconnect out of the route: uvicorn logged "Exception in ASGI
    # application" with a traceback for every sender that went away mid-body.
    rig = Rig(tmp_path)
    app = rig.client.app
    body = _body(3)
    parts = [
        {"type": "http.request", "body": body[:10], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return parts.pop(0)

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    headers = [(k.lower().encode(), v.encode()) for k, v in HEADERS.items()]
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/api/v1/write", "raw_path": b"/api/v1/write",
        "query_string": b"", "root_path": "", "headers": headers, "server": ("t", 80),
        "client": ("c", 1),
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))  # type: ignore[arg-type]
    assert rig.count("499") == 1 and rig.count("500") == 0
    assert rig.queue.samples == 0 and len(rig.index) == 0


def test_series_over_the_limit_are_400_naming_the_limit_and_the_rest_is_kept(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path, max_series=8)
    assert rig.post(_body(5)).status_code == 204  # type: ignore[attr-defined]
    # 10 series, 5 known: 3 more fit, 2 are refused.
    r = rig.post(encode([({"__name__": "m", "i": str(i)}, [(T0 + 1, 1.0)]) for i in range(10)]))
    assert r.status_code == 400  # type: ignore[attr-defined]
    text = r.text  # type: ignore[attr-defined]
    assert "2 new series refused" in text and "max_series = 8" in text, text
    assert "the other 8 samples were accepted" in text, text
    assert rig.queue.samples == 5 + 8 and rig.queue.requests == 2 and len(rig.index) == 8
    assert rig.count("400") == 1
    assert rig.registry.get_sample_value("relia_remote_write_samples_total") == 13
    # Only refused series: 400, nothing queued.
    r = rig.post(encode([({"__name__": "other"}, [(T0, 1.0)])]))
    assert r.status_code == 400 and "1 new series refused" in r.text  # type: ignore[attr-defined]
    assert rig.queue.requests == 2
    # Known series only: 204 as before.
    assert rig.post(_body(8)).status_code == 204  # type: ignore[attr-defined]
    assert rig.index.refused() == {"remote_write": 3}


def test_full_queue_is_a_503_with_retry_after_that_prometheus_retries(rig: Rig) -> None:
    # Prometheus retries a 5xx by default but drops a batch answered 429 (unless the
    # experimental retry_on_http_429 is set): a full queue must not lose the senders' data.
    assert rig.post(_body(60)).status_code == 204  # type: ignore[attr-defined]
    r = rig.post(_body(60, "n"))
    assert r.status_code == 503  # type: ignore[attr-defined]
    assert int(r.headers["Retry-After"]) >= 1  # type: ignore[attr-defined]
    assert "queue is full" in r.text  # type: ignore[attr-defined]
    assert rig.queue.samples == 60
    unavailable = "relia_remote_write_unavailable_total"
    assert rig.registry.get_sample_value(unavailable, {"reason": "queue_full"}) == 1.0
    assert rig.count("503") == 1.0
    rig.queue.drain()
    assert rig.post(_body(60, "n")).status_code == 204  # type: ignore[attr-defined]


def test_too_many_samples_for_the_queue_is_413(rig: Rig) -> None:
    r = rig.post(_body(101))
    assert r.status_code == 413  # type: ignore[attr-defined]
    assert "101 samples in one request; the ingest queue holds 100" in r.text  # type: ignore[attr-defined]
    # Refused before its series are registered: a request that can never be taken must not
    # grow the series index (each series stays in memory for good).
    assert len(rig.index) == 0 and rig.queue.samples == 0


def test_too_large_bodies_are_413(tmp_path: Path) -> None:
    rig = Rig(tmp_path, max_body=1000)
    r = rig.post(_body(200))
    assert r.status_code == 413  # type: ignore[attr-defined]
    small = Rig(tmp_path / "b")
    small.decoder.max_decoded_bytes = 100
    assert small.post(_body(50)).status_code == 413  # type: ignore[attr-defined]


def test_closed_queue_is_503(rig: Rig) -> None:
    rig.queue.close()
    r = rig.post(_body(1))
    assert r.status_code == 503 and r.headers["Retry-After"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Content-Encoding", "gzip"),
        ("Content-Type", "application/x-protobuf;proto=io.prometheus.write.v2.Request"),
        ("X-Prometheus-Remote-Write-Version", "2.0.0"),
    ],
)
def test_other_encodings_and_versions_are_415(rig: Rig, header: str, value: str) -> None:
    r = rig.post(_body(1), {**HEADERS, header: value})
    assert r.status_code == 415  # type: ignore[attr-defined]
    assert rig.queue.samples == 0


@pytest.mark.parametrize("header", ["Content-Encoding", "Content-Type"])
def test_a_write_without_the_headers_senders_must_send_is_415(rig: Rig, header: str) -> None:
    # What a cross-site page can send without a preflight ("no-cors" fetch): no such header.
    # Nothing of it is kept, and the answer names the header.
    headers = {k: v for k, v in HEADERS.items() if k != header}
    r = rig.post(_body(1), headers)
    assert r.status_code == 415  # type: ignore[attr-defined]
    assert f"{header} header missing" in r.json()["detail"]  # type: ignore[attr-defined]
    assert rig.queue.samples == 0 and len(rig.index) == 0


def test_the_version_header_stays_optional(rig: Rig) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != "X-Prometheus-Remote-Write-Version"}
    assert rig.post(_body(1), headers).status_code == 204  # type: ignore[attr-defined]


def test_a_request_of_exactly_the_queue_bound_is_accepted(rig: Rig) -> None:
    assert rig.post(_body(100)).status_code == 204  # type: ignore[attr-defined]
    assert rig.queue.samples == 100


def test_retry_after_is_the_queues_estimate(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    import relia.ingest.queue as queue_mod

    class Clock:
        now = 0.0

        def monotonic(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(queue_mod, "time", clock)
    for t in (0.0, 10.0):  # 20 samples drained in 10 s: 2 per second
        clock.now = t
        assert rig.post(_body(10)).status_code == 204  # type: ignore[attr-defined]
        rig.queue.drain()
    clock.now = 10.0
    assert rig.post(_body(95)).status_code == 204  # type: ignore[attr-defined]
    r = rig.post(_body(20, "n"))  # 15 over the bound at 2/s: 7.5 s
    assert r.status_code == 503  # type: ignore[attr-defined]
    assert r.headers["Retry-After"] == "8"  # type: ignore[attr-defined]


def test_shutdown_during_a_request_is_503_with_retry_after(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = rig.decoder.decode

    def decode(body: bytes, max_samples: int | None = None) -> object:
        rig.queue.close()  # relia starts shutting down while this request is decoded
        return real(body, max_samples)

    monkeypatch.setattr(rig.decoder, "decode", decode)
    r = rig.post(_body(1))
    assert r.status_code == 503  # type: ignore[attr-defined]
    assert int(r.headers["Retry-After"]) >= 1  # type: ignore[attr-defined]
    assert rig.queue.samples == 0


def test_a_write_the_wal_cannot_take_is_a_5xx_that_senders_retry(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The disk is full: the WAL refuses the write (queue.offer raises OSError). The request is
    # not acknowledged: 503 with Retry-After (senders retry a 5xx, never a 4xx), nothing queued.
    def full(*_args: object) -> int:
        raise OSError(28, "WAL write cut short: 10 of 40 bytes")

    monkeypatch.setattr(rig.queue, "offer", full)
    r = rig.post(_body(1))
    assert r.status_code == 503  # type: ignore[attr-defined]
    assert int(r.headers["Retry-After"]) >= 1  # type: ignore[attr-defined]
    assert "write-ahead log" in r.text  # type: ignore[attr-defined]
    assert rig.queue.samples == 0


def test_a_wal_error_does_not_tell_the_sender_where_data_dir_is(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The OSError's text, with its absolute path, went into the 503 body: an ingest token
    # reads nothing, and /healthz hides the same text from it.
    def gone(*_args: object) -> int:
        raise OSError(2, "No such file or directory", "/secret/path/wal/1.wal")

    monkeypatch.setattr(rig.queue, "offer", gone)
    r = rig.post(_body(1))
    assert r.status_code == 503  # type: ignore[attr-defined]
    detail = r.json()["detail"]  # type: ignore[attr-defined]
    assert "/secret/path" not in detail
    assert detail == (
        "the write-ahead log cannot take writes (No such file or directory): see relia's log"
    )


def test_a_malformed_label_is_not_shown_as_made_up_labels(rig: Rig) -> None:
    # A timeseries whose Label is cut short: the message names it by index alone.
    r = rig.post(bytes(cramjam.snappy.compress_raw(b"\x0a\x05\x0a\x03abc")))
    assert r.status_code == 400  # type: ignore[attr-defined]
    detail = r.json()["detail"]  # type: ignore[attr-defined]
    assert "timeseries 0:" in detail and "{" not in detail
