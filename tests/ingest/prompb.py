"""An independent remote-write encoder for tests: the prompb messages built with protobuf's
runtime descriptor API (a hand-built ``FileDescriptorProto``), serialized by the protobuf library;
and two wire-format helpers (:func:`varint`, :func:`field`) for bodies the library would not write
(unknown fields, over-long varints, malformed messages).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cramjam
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

__all__ = ["STALE_NAN", "WriteRequest", "encode", "field", "varint", "write_request"]

STALE_NAN = 0x7FF0000000000002

_F = descriptor_pb2.FieldDescriptorProto


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(name="relia_test_prompb.proto", package="prometheus")
    fd.syntax = "proto3"

    def msg(name: str, fields: Sequence[tuple[str, int, int, int, str | None]]) -> None:
        m = fd.message_type.add(name=name)
        for fname, number, ftype, label, type_name in fields:
            f = m.field.add(name=fname, number=number, type=ftype, label=label)
            if type_name:
                f.type_name = type_name

    opt, rep = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    msg("Label", [("name", 1, _F.TYPE_STRING, opt, None), ("value", 2, _F.TYPE_STRING, opt, None)])
    msg(
        "Sample",
        [("value", 1, _F.TYPE_DOUBLE, opt, None), ("timestamp", 2, _F.TYPE_INT64, opt, None)],
    )
    msg(
        "Exemplar",
        [
            ("labels", 1, _F.TYPE_MESSAGE, rep, ".prometheus.Label"),
            ("value", 2, _F.TYPE_DOUBLE, opt, None),
            ("timestamp", 3, _F.TYPE_INT64, opt, None),
        ],
    )
    msg(
        "Histogram",
        [("count_int", 1, _F.TYPE_UINT64, opt, None), ("timestamp", 15, _F.TYPE_INT64, opt, None)],
    )
    msg(
        "TimeSeries",
        [
            ("labels", 1, _F.TYPE_MESSAGE, rep, ".prometheus.Label"),
            ("samples", 2, _F.TYPE_MESSAGE, rep, ".prometheus.Sample"),
            ("exemplars", 3, _F.TYPE_MESSAGE, rep, ".prometheus.Exemplar"),
            ("histograms", 4, _F.TYPE_MESSAGE, rep, ".prometheus.Histogram"),
        ],
    )
    msg(
        "MetricMetadata",
        [
            ("metric_family_name", 4, _F.TYPE_STRING, opt, None),
            ("help", 5, _F.TYPE_STRING, opt, None),
        ],
    )
    msg(
        "WriteRequest",
        [
            ("timeseries", 1, _F.TYPE_MESSAGE, rep, ".prometheus.TimeSeries"),
            ("metadata", 3, _F.TYPE_MESSAGE, rep, ".prometheus.MetricMetadata"),
        ],
    )
    return fd


_pool = descriptor_pool.DescriptorPool()
_pool.Add(_file())
WriteRequest: Any = message_factory.GetMessageClass(
    _pool.FindMessageTypeByName("prometheus.WriteRequest")
)

Series = tuple[Mapping[str, str], Sequence[tuple[int, float]]]


def write_request(series: Sequence[Series]) -> Any:
    """A ``WriteRequest`` of ``(labels incl. __name__, [(ts_ms, value), ...])`` per series;
    labels are written sorted by name, as Prometheus does."""
    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for k in sorted(labels):
            ts.labels.add(name=k, value=labels[k])
        for t, v in samples:
            ts.samples.add(timestamp=t, value=v)
    return req


def encode(series: Sequence[Series]) -> bytes:
    """Snappy-compressed serialized ``WriteRequest`` (a remote-write request body)."""
    raw = write_request(series).SerializeToString()
    return bytes(cramjam.snappy.compress_raw(raw))


def varint(n: int, width: int = 0) -> bytes:
    """``n`` (unsigned, below 2**64) as a protobuf varint, padded with continuation bytes to
    ``width`` bytes when given (an over-long encoding, which protobuf parsers accept)."""
    out = bytearray()
    while True:
        out.append(n & 0x7F)
        n >>= 7
        if not n:
            break
        out[-1] |= 0x80
    while len(out) < width:
        out[-1] |= 0x80
        out.append(0)
    return bytes(out)


def field(number: int, wire: int, payload: bytes) -> bytes:
    """One field: its tag, then ``payload`` (given its length first when ``wire`` is 2)."""
    tag = varint(number << 3 | wire)
    return tag + varint(len(payload)) + payload if wire == 2 else tag + payload
