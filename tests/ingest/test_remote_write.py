from __future__ import annotations

import math
import struct

import cramjam
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.errors import DataError
from relia.ingest.remote_write import RemoteWriteDecoder, decompressed_size
from relia.signals import SeriesIndex
from tests.ingest.prompb import STALE_NAN, WriteRequest, encode, field, varint, write_request

T0 = 1_700_000_000_000


def _decoder() -> tuple[RemoteWriteDecoder, SeriesIndex]:
    index = SeriesIndex()
    return RemoteWriteDecoder(index), index


def _stale() -> float:
    return float(struct.unpack("<d", struct.pack("<Q", STALE_NAN))[0])


def _rows(dec_index: SeriesIndex, batch: object) -> list[tuple[str, dict[str, str], int, float]]:
    b = batch  # MetricBatch
    out = []
    for sid, t, v in zip(b.series_id.tolist(), b.ts.tolist(), b.value.tolist(), strict=True):  # type: ignore[attr-defined]
        name, labels = dec_index.key(sid)
        out.append((name, dict(labels), t, v))
    return out


def test_decodes_what_the_protobuf_library_encodes() -> None:
    dec, index = _decoder()
    series = [
        ({"__name__": "cpu", "job": "api", "instance": "a:9100"}, [(T0, 1.5), (T0 + 15_000, -2.0)]),
        ({"__name__": "mem", "job": "api"}, [(T0, 1e300)]),
        ({"__name__": "up"}, [(-5, 0.0)]),
    ]
    got = dec.decode(encode(series))
    assert got.series == 3 and got.new_series == 3 and got.stale == 0
    assert _rows(index, got.batch) == [
        ("cpu", {"job": "api", "instance": "a:9100"}, T0, 1.5),
        ("cpu", {"job": "api", "instance": "a:9100"}, T0 + 15_000, -2.0),
        ("mem", {"job": "api"}, T0, 1e300),
        ("up", {}, -5, 0.0),
    ]
    # The ids are the index's stable ids of name and labels.
    assert got.batch.series_id[0] == index.find("cpu", {"job": "api", "instance": "a:9100"})
    again = dec.decode(encode(series))
    assert again.new_series == 0
    np.testing.assert_array_equal(again.batch.series_id, got.batch.series_id)


def test_stale_markers_are_dropped_and_counted_other_nan_kept() -> None:
    dec, _ = _decoder()
    got = dec.decode(
        encode([({"__name__": "x"}, [(T0, 1.0), (T0 + 1, _stale()), (T0 + 2, math.nan)])])
    )
    assert got.stale == 1
    assert got.batch.ts.tolist() == [T0, T0 + 2]
    assert got.batch.value[0] == 1.0 and math.isnan(got.batch.value[1])


def test_series_of_only_stale_markers_is_not_registered() -> None:
    dec, index = _decoder()
    got = dec.decode(encode([({"__name__": "gone"}, [(T0, _stale())])]))
    assert len(got.batch) == 0 and got.stale == 1 and len(index) == 0


def test_metadata_exemplars_and_histograms_are_skipped() -> None:
    dec, _ = _decoder()
    req = write_request([({"__name__": "x", "a": "1"}, [(T0, 3.0)])])
    ts = req.timeseries[0]
    ex = ts.exemplars.add(value=1.0, timestamp=T0)
    ex.labels.add(name="trace_id", value="abc")
    ts.histograms.add(count_int=5, timestamp=T0)
    req.metadata.add(metric_family_name="x", help="help")
    body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
    got = dec.decode(body)
    assert got.histograms == 1 and got.batch.value.tolist() == [3.0]


_label_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@st.composite
def _requests(draw: st.DrawFn) -> list[tuple[dict[str, str], list[tuple[int, float]]]]:
    n = draw(st.integers(1, 6))
    names = draw(st.lists(st.text("abcxyz_:", min_size=1, max_size=6), min_size=n, max_size=n))
    out = []
    for name in names:
        labels = draw(
            st.dictionaries(
                st.text("abcdefgh_", min_size=1, max_size=5).filter(lambda k: k != "__name__"),
                _label_text,
                max_size=4,
            )
        )
        times = draw(st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=5, unique=True))
        values = draw(
            st.lists(st.floats(allow_nan=False), min_size=len(times), max_size=len(times))
        )
        out.append(({"__name__": name, **labels}, list(zip(sorted(times), values, strict=True))))
    return out


@settings(max_examples=150, deadline=None)
@given(_requests())
def test_random_requests_round_trip(
    series: list[tuple[dict[str, str], list[tuple[int, float]]]],
) -> None:
    dec, index = _decoder()
    got = dec.decode(encode(series))
    want = []
    for labels, samples in series:
        rest = {k: v for k, v in labels.items() if k != "__name__"}
        for t, v in samples:
            want.append((labels["__name__"], rest, t, v))
    assert _rows(index, got.batch) == want


def _raw_body(raw: bytes) -> bytes:
    return bytes(cramjam.snappy.compress_raw(raw))


def _assert_rejected(dec: RemoteWriteDecoder, index: SeriesIndex, body: bytes, words: str) -> None:
    with pytest.raises(DataError, match=words):
        dec.decode(body)
    assert len(index) == 0, "a rejected request must register no series"


def test_bad_snappy() -> None:
    dec, index = _decoder()
    _assert_rejected(dec, index, b"\x10garbage-garbage", "snappy")
    _assert_rejected(dec, index, b"\xff\xff\xff\xff\xff\xff", "snappy")


def test_decompressed_size_limit() -> None:
    index = SeriesIndex()
    dec = RemoteWriteDecoder(index, max_decoded_bytes=100)
    body = encode([({"__name__": "x", "pad": "p" * 200}, [(T0, 1.0)])])
    assert decompressed_size(body) > 100
    _assert_rejected(dec, index, body, "over the limit")


def test_truncated_protobuf() -> None:
    dec, index = _decoder()
    raw = write_request([({"__name__": "x", "a": "b"}, [(T0, 1.0)])]).SerializeToString()
    for cut in range(1, len(raw)):
        with pytest.raises(DataError, match="malformed WriteRequest"):
            dec.decode(_raw_body(raw[:cut]))
    assert len(index) == 0


def test_wrong_wire_type_and_groups() -> None:
    dec, index = _decoder()
    _assert_rejected(dec, index, _raw_body(b"\x08\x01"), "wrong wire type")  # field 1 as varint
    _assert_rejected(dec, index, _raw_body(b"\x2b\x0c"), "unsupported wire type")  # a group


def test_missing_name() -> None:
    dec, index = _decoder()
    _assert_rejected(dec, index, encode([({"job": "a"}, [(T0, 1.0)])]), "__name__")
    _assert_rejected(dec, index, encode([({"__name__": ""}, [(T0, 1.0)])]), "__name__")
    # One good series and one bad: nothing of the request is kept.
    body = encode([({"__name__": "ok"}, [(T0, 1.0)]), ({"job": "a"}, [(T0, 1.0)])])
    _assert_rejected(dec, index, body, "__name__")


def test_out_of_order_and_duplicate_timestamps() -> None:
    dec, index = _decoder()
    _assert_rejected(
        dec, index, encode([({"__name__": "x"}, [(T0 + 1, 1.0), (T0, 2.0)])]), "increasing"
    )
    _assert_rejected(
        dec, index, encode([({"__name__": "x"}, [(T0, 1.0), (T0, 2.0)])]), "increasing"
    )


def test_invalid_utf8_and_repeated_label() -> None:
    dec, index = _decoder()
    req = WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="x")
    ts.labels.add(name="a", value="1")
    ts.labels.add(name="a", value="2")
    ts.samples.add(timestamp=T0, value=1.0)
    _assert_rejected(dec, index, _raw_body(req.SerializeToString()), "repeated")
    raw = write_request([({"__name__": "x", "a": "zz"}, [(T0, 1.0)])]).SerializeToString()
    bad = raw.replace(b"zz", b"\xff\xfe")
    _assert_rejected(dec, index, _raw_body(bad), "UTF-8")


# Hand-built bodies (protobuf wire format) for what the protobuf library would not write.
def _sample(t: int, v: float) -> bytes:
    """A ``Sample`` message's content (value, then timestamp as two's complement)."""
    return field(1, 1, struct.pack("<d", v)) + field(2, 0, varint(t % 2**64))


def _series(content: bytes) -> bytes:
    """A WriteRequest field holding one ``TimeSeries`` of ``content``."""
    return field(1, 2, content)


def test_a_varint_with_bits_past_the_64th_is_refused_not_a_crash() -> None:
    # The tag of the __name__ label written in ten bytes whose last one carries bit 64: protobuf
    # refuses that as an overflow. Before, the kernel dropped the bit (field 1, a label) while the
    # label decoder kept it (some other field): a KeyError, which the API answered with a 500.
    overflowing_tag = b"\x8a" + b"\x80" * 8 + b"\x02"
    label = field(1, 2, b"__name__") + field(2, 2, b"x")
    content = overflowing_tag + varint(len(label)) + label + field(2, 2, _sample(T0, 1.0))
    dec, index = _decoder()
    with pytest.raises(DataError, match=r"at byte 2: truncated or over-long varint"):
        dec.decode_raw(_series(content))
    assert len(index) == 0
