from __future__ import annotations

import math
import struct

import cramjam
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.errors import DataError
from relia.ingest._kernels import scan
from relia.ingest.remote_write import RemoteWriteDecoder, decompressed_size
from relia.signals import SeriesIndex
from tests.ingest.prompb import STALE_NAN, WriteRequest, encode, field, varint, write_request

T0 = 1_700_000_000_000
NOTHING_STORED = "nothing in this request was stored"


def _decoder() -> tuple[RemoteWriteDecoder, SeriesIndex]:
    # No future limit: the property tests draw any int64 time (the limit has its own tests).
    index = SeriesIndex()
    return RemoteWriteDecoder(index, max_future_ms=None), index


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
    dec, index = _decoder()
    req = write_request([({"__name__": "x", "a": "1"}, [(T0, 3.0)])])
    ts = req.timeseries[0]
    ex = ts.exemplars.add(value=1.0, timestamp=T0)
    ex.labels.add(name="trace_id", value="abc")
    ts.histograms.add(count_int=5, timestamp=T0)
    ts.histograms.add(count_int=6, timestamp=T0 + 1)
    req.metadata.add(metric_family_name="x", help="help")
    body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
    got = dec.decode(body)
    # Histograms are counted (not exemplars), and an exemplar's labels are not the series'.
    assert got.histograms == 2
    assert _rows(index, got.batch) == [("x", {"a": "1"}, T0, 3.0)]


# Any UTF-8 but NUL, which is refused in a value (its own test).
_label_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    max_size=12,
)


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
        # An empty label value is no label (Prometheus' data model).
        rest = {k: v for k, v in labels.items() if k != "__name__" and v != ""}
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
def _label(name: bytes, value: bytes) -> bytes:
    """A ``Label`` message's content."""
    return field(1, 2, name) + field(2, 2, value)


def _sample(t: int, v: float) -> bytes:
    """A ``Sample`` message's content (value, then timestamp as two's complement)."""
    return field(1, 1, struct.pack("<d", v)) + field(2, 0, varint(t % 2**64))


NAME_X = field(1, 2, _label(b"__name__", b"x"))  # a TimeSeries' __name__="x" label field


def _series(content: bytes) -> bytes:
    """A WriteRequest field holding one ``TimeSeries`` of ``content``."""
    return field(1, 2, content)


def _decode_raw(raw: bytes) -> list[tuple[str, dict[str, str], int, float]]:
    dec, index = _decoder()
    return _rows(index, dec.decode_raw(raw).batch)


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


def test_over_long_varints_that_protobuf_accepts_decode_as_the_short_ones() -> None:
    label = _label(b"__name__", b"x")
    padded = varint(0x0A, 10) + varint(len(label), 10) + label  # ten bytes each, last one 0
    content = padded + field(2, 2, _sample(-3, 2.5))
    assert _decode_raw(_series(content)) == [("x", {}, -3, 2.5)]


def test_decompressed_size_reads_the_snappy_length_header() -> None:
    for n in (0, 1, 127, 128, 300, 16_384, 2**21 + 5):
        assert decompressed_size(_raw_body(b"a" * n)) == n
    # Five bytes of header: up to 2**35 - 1 (snappy allows 2**32 - 1); six are refused.
    assert decompressed_size(varint(2**30) + b"\x00") == 2**30
    assert decompressed_size(varint(2**32 - 1)) == 2**32 - 1
    with pytest.raises(DataError, match="no valid length header"):
        decompressed_size(b"\x80" * 5 + b"\x01")


def test_a_body_announcing_more_than_the_limit_is_over_the_limit_not_bad_snappy() -> None:
    dec, _ = _decoder()
    with pytest.raises(DataError, match="decompressed body of 1073741824 bytes is over the limit"):
        dec.decode(varint(2**30) + b"\x00")


def test_a_body_of_exactly_the_decompressed_limit_is_accepted() -> None:
    raw = write_request([({"__name__": "x"}, [(T0, 1.0)])]).SerializeToString()
    index = SeriesIndex()
    assert len(RemoteWriteDecoder(index, max_decoded_bytes=len(raw)).decode(_raw_body(raw)).batch)
    with pytest.raises(DataError, match="over the limit"):
        RemoteWriteDecoder(index, max_decoded_bytes=len(raw) - 1).decode(_raw_body(raw))


def test_labels_of_127_128_and_300_bytes_decode() -> None:
    # Lengths of 128 and more take two varint bytes, the first of them 0x80 for 128.
    labels = {"__name__": "n" * 128, "a": "v" * 127, "b": "w" * 128, "c" * 300: "z"}
    dec, index = _decoder()
    got = dec.decode(encode([(labels, [(T0, 1.0)])]))
    assert _rows(index, got.batch) == [
        ("n" * 128, {"a": "v" * 127, "b": "w" * 128, "c" * 300: "z"}, T0, 1.0)
    ]


def test_unknown_fields_of_every_wire_type_are_skipped_in_every_message() -> None:
    # Fields numbered 9 of every wire type a parser must skip, around the known ones. A fixed-size
    # one ends some messages exactly; one skipped by the wrong size would misread what follows: a
    # fixed32 taken as 8 bytes swallows the next field's head, and a fixed64 taken as 4 bytes
    # leaves its last 4 to be read as a Label of an empty name (or a name field inside a Label).
    lead = field(9, 0, varint(300)) + field(9, 2, b"\x0a\x01z")
    fixed32 = field(9, 5, b"\x00" * 4)
    fixed64 = field(9, 1, b"\x00" * 4 + b"\x0a\x02\x0a\x00")
    label = lead + fixed32 + _label(b"__name__", b"x") + fixed64
    job = lead + fixed64 + _label(b"job", b"api") + fixed32
    sample = lead + fixed32 + _sample(T0, 4.0) + fixed64
    labels = fixed32 + field(1, 2, label) + fixed64 + field(1, 2, job)
    content = lead + labels + fixed64 + field(2, 2, sample) + fixed64 + fixed32
    raw = lead + fixed64 + _series(content) + fixed32
    assert _decode_raw(raw) == [("x", {"job": "api"}, T0, 4.0)]


@pytest.mark.parametrize("where", ["request", "timeseries", "label", "sample"])
def test_field_number_zero_is_refused_in_every_message(where: str) -> None:
    # Protobuf reserves field number 0 (Prometheus' decoder answers "illegal tag 0"); a body
    # holding one is damaged, not an extension to skip.
    zero = field(0, 0, varint(1))
    label = _label(b"__name__", b"x") + (zero if where == "label" else b"")
    sample = _sample(T0, 1.0) + (zero if where == "sample" else b"")
    content = field(1, 2, label) + field(2, 2, sample) + (zero if where == "timeseries" else b"")
    raw = _series(content) + (zero if where == "request" else b"")
    dec, index = _decoder()
    _assert_rejected(dec, index, _raw_body(raw), "field number 0")


def test_a_label_with_an_empty_name_is_refused() -> None:
    content = NAME_X + field(1, 2, field(2, 2, b"v")) + field(2, 2, _sample(T0, 1.0))
    dec, index = _decoder()
    _assert_rejected(dec, index, _raw_body(_series(content)), "empty label name")


def test_an_explicitly_empty_name_value_is_a_missing_name() -> None:
    label = field(1, 2, b"__name__") + field(2, 2, b"")
    content = field(1, 2, label) + field(2, 2, _sample(T0, 1.0))
    dec, index = _decoder()
    _assert_rejected(dec, index, _raw_body(_series(content)), "no __name__ label")


@pytest.mark.parametrize(
    "name", [b"__name__"[:p] + b"X" + b"__name__"[p + 1 :] for p in range(8)] + [b"__name__x"]
)
def test_a_label_named_almost_name_is_not_the_name(name: bytes) -> None:
    content = field(1, 2, _label(name, b"x")) + field(2, 2, _sample(T0, 1.0))
    dec, index = _decoder()
    _assert_rejected(dec, index, _raw_body(_series(content)), "no __name__ label")


def test_a_request_mixing_known_and_new_series_resolves_both() -> None:
    dec, index = _decoder()
    a = ({"__name__": "a"}, [(T0, 1.0)])
    b = ({"__name__": "b", "j": "x"}, [(T0, 2.0)])
    c = ({"__name__": "c"}, [(T0, 3.0)])
    dec.decode(encode([a]))
    got = dec.decode(encode([a, b]))
    assert got.new_series == 1
    assert _rows(index, got.batch) == [("a", {}, T0, 1.0), ("b", {"j": "x"}, T0, 2.0)]
    dec.decode(encode([c]))
    again = dec.decode(encode([c, b, a]))
    assert again.new_series == 0
    assert _rows(index, again.batch) == [
        ("c", {}, T0, 3.0),
        ("b", {"j": "x"}, T0, 2.0),
        ("a", {}, T0, 1.0),
    ]


def test_series_whose_labels_differ_only_in_leading_bytes_stay_apart_across_requests() -> None:
    dec, index = _decoder()
    first, second = "a" + "x" * 19, "b" + "x" * 19  # differ inside a whole 8-byte word
    dec.decode(encode([({"__name__": first}, [(T0, 1.0)])]))
    got = dec.decode(encode([({"__name__": second}, [(T0, 2.0)])]))
    assert got.new_series == 1 and _rows(index, got.batch) == [(second, {}, T0, 2.0)]


def test_labels_split_into_messages_differently_are_different_series() -> None:
    # Two Label messages, the first 16 bytes long, against one Label holding both (whose last
    # name and value win): the same content bytes, framed differently.
    job = _label(b"a", b"y" * 11)
    assert len(job) == 16
    name = _label(b"__name__", b"x")
    two = field(1, 2, job) + field(1, 2, name) + field(2, 2, _sample(T0, 1.0))
    one = field(1, 2, job + name) + field(2, 2, _sample(T0, 2.0))
    dec, index = _decoder()
    dec.decode_raw(_series(two))
    got = dec.decode_raw(_series(one))
    assert got.new_series == 1 and _rows(index, got.batch) == [("x", {}, T0, 2.0)]


def test_labels_in_another_order_are_the_same_series() -> None:
    dec, index = _decoder()
    ab = field(1, 2, _label(b"a", b"1")) + field(1, 2, _label(b"b", b"2"))
    ba = field(1, 2, _label(b"b", b"2")) + field(1, 2, _label(b"a", b"1"))
    x = dec.decode_raw(_series(NAME_X + ab + field(2, 2, _sample(T0, 1.0))))
    y = dec.decode_raw(_series(ba + NAME_X + field(2, 2, _sample(T0, 2.0))))
    assert x.batch.series_id.tolist() == y.batch.series_id.tolist() and len(index) == 1


def test_series_keys_depend_on_the_seed() -> None:
    raw = write_request([({"__name__": "x", "a": "1"}, [(T0, 1.0)])]).SerializeToString()
    buf = np.frombuffer(raw, np.uint8)
    assert scan(buf, 1).keys.tolist() != scan(buf, 2).keys.tolist()


def test_many_smallest_possible_series_in_one_request() -> None:
    # 19 bytes each: the name label (15) and one empty sample (2) inside the TimeSeries' framing.
    one = _series(field(1, 2, _label(b"__name__", b"s")) + field(2, 2, b""))
    assert len(one) == 19
    dec, index = _decoder()
    got = dec.decode_raw(one * 200)
    assert got.series == 200 and len(got.batch) == 200 and len(index) == 1


def test_a_field_numbered_zero_gives_no_samples() -> None:
    # Field number 0 is not valid protobuf: refusing it or skipping it are both fine, reading it
    # as a timeseries is not.
    bogus = field(0, 2, field(1, 2, _label(b"__name__", b"zero")) + field(2, 2, _sample(T0, 9.0)))
    raw = bogus + _series(NAME_X + field(2, 2, _sample(T0, 1.0)))
    dec, index = _decoder()
    try:
        got = dec.decode_raw(raw)
    except DataError:
        return
    assert _rows(index, got.batch) == [("x", {}, T0, 1.0)]


def _sample_field_at(content: bytes, sample: bytes) -> tuple[bytes, int]:
    """A TimeSeries of ``content`` then a Sample field of ``sample``; the offset of the Sample's
    content in the WriteRequest."""
    ts = content + field(2, 2, sample)
    return _series(ts), len(_series(ts)) - len(sample)


def _malformed() -> list[tuple[str, bytes, int, str]]:
    """(case, raw WriteRequest, byte named in the error, what is named)."""
    varint_ = "truncated or over-long varint"
    overrun = "a length runs past the end of its message"
    wire = "unsupported wire type (groups or a reserved type)"
    wrong = "a known field has the wrong wire type"
    fixed = "a fixed-size field is truncated"
    head = 2 + len(NAME_X)  # the byte after the name label in a TimeSeries at the start
    s1 = field(2, 2, _sample(T0 + 1, 1.0))
    return [
        ("eleven-byte tag", b"\x80" * 10 + b"\x01", 0, varint_),
        ("tenth byte over 1", b"\x80" * 9 + b"\x7f", 0, varint_),
        ("timeseries as varint", b"\x08\x01", 0, wrong),
        ("group in the request", b"\x2b\x0c", 1, wire),
        ("length cut", b"\x0a\x80", 1, varint_),
        ("length past the end", b"\x0a\x05\x01", 1, overrun),
        ("fixed64 cut in the request", b"\x11" + b"\x00" * 4, 1, fixed),
        ("samples length cut", _series(NAME_X + b"\x12") + _series(NAME_X), head + 1, varint_),
        ("group in a timeseries", _series(NAME_X + b"\x1b"), head + 1, wire),
        ("fixed64 cut in a timeseries", _series(NAME_X + b"\x19" + b"\x00" * 4), head + 1, fixed),
        ("labels as varint", _series(b"\x08\x01" + NAME_X), 2, wrong),
        ("label name as varint", _series(field(1, 2, field(1, 0, b"\x01"))), 4, wrong),
        (
            "label value past its label",
            _series(field(1, 2, field(1, 2, b"a") + b"\x12\x02b")),
            4,
            overrun,
        ),
        (
            "no name",
            _series(field(1, 2, _label(b"job", b"a")) + s1),
            2,
            "a timeseries has no __name__ label (or an empty one)",
        ),
        (
            "out of order",
            _series(NAME_X + s1 + field(2, 2, _sample(T0, 1.0))),
            head + len(s1) + 2,
            "sample timestamps of a timeseries are not in increasing order",
        ),
        ("value as varint", *_sample_field_at(NAME_X, field(1, 0, varint(1))), wrong),
        ("timestamp as fixed64", *_sample_field_at(NAME_X, field(2, 1, b"\x00" * 8)), wrong),
        ("value cut", _series(NAME_X + field(2, 2, b"\x09\x00\x00")), head + 3, fixed),
        ("fixed64 cut in a sample", *_sample_field_at(NAME_X, b"\x19\x00\x00"), fixed),
    ]


@pytest.mark.parametrize(
    ("raw", "at", "what"), [c[1:] for c in _malformed()], ids=[c[0] for c in _malformed()]
)
def test_a_malformed_request_names_the_problem_and_its_byte(raw: bytes, at: int, what: str) -> None:
    dec, index = _decoder()
    with pytest.raises(DataError) as caught:
        dec.decode_raw(raw)
    text = str(caught.value)
    assert text.startswith("request body: ")  # then the timeseries, when inside one
    assert text.endswith(f"malformed WriteRequest at byte {at}: {what}; {NOTHING_STORED}")
    assert len(index) == 0


def test_a_timestamp_cut_at_the_end_of_its_sample_is_not_read_from_the_next_field() -> None:
    # The Sample ends with the timestamp's tag; the byte after it (the name label's tag, 10)
    # belongs to the TimeSeries and must not be taken as the timestamp.
    truncated = field(1, 1, struct.pack("<d", 1.0)) + b"\x10"
    raw = _series(field(2, 2, truncated) + NAME_X)
    dec, _ = _decoder()
    with pytest.raises(DataError, match=f"at byte {2 + 2 + 9}: truncated or over-long varint"):
        dec.decode_raw(raw)


@st.composite
def _varint_bytes(draw: st.DrawFn, n: int) -> bytes:
    """``n`` as a varint: short, over-long, over-long with bits past the 64th, or cut short."""
    # Mostly well formed, so that one odd varint in an otherwise valid body gets tried.
    kind = draw(st.sampled_from(["short"] * 20 + ["long", "long", "overflow", "cut"]))
    if kind == "long":
        return varint(n, draw(st.integers(1, 11)))
    if kind == "overflow" and n < 2**63:
        return varint(n, 10)[:-1] + bytes([draw(st.integers(2, 0x7F))])
    if kind == "cut":
        return varint(n)[:-1]
    return varint(n)


@st.composite
def _wire_fields(draw: st.DrawFn, in_series: bool = False) -> bytes:
    """Protobuf-shaped bytes: at the top mostly TimeSeries fields, inside them mostly Labels and
    Samples, so that bodies get deep; some unknown fields numbered 0 to 5 of any wire type with
    random payloads; tags and lengths written in any of :func:`_varint_bytes`' ways."""
    parts = []
    known = ["label", "label", "sample", "sample"] if in_series else ["series", "series"]
    for _ in range(draw(st.integers(2, 6) if in_series else st.integers(1, 3))):
        kind = draw(st.sampled_from([*known, *known, "other"]))
        if kind == "other":
            number = draw(st.sampled_from([0, 3, 4, 5, 1, 2]))
            wire = draw(st.sampled_from([0, 1, 2, 5, 0, 1, 2, 5, 3, 7]))
        else:
            number, wire = (2 if kind == "sample" else 1), 2
        parts.append(draw(_varint_bytes(number << 3 | wire)))
        if wire == 0:
            parts.append(draw(_varint_bytes(draw(st.integers(0, 2**64 - 1)))))
        elif wire in (1, 5):
            parts.append(draw(st.binary(min_size=0, max_size=8 if wire == 1 else 4)))
        elif wire == 2:
            if kind == "label":
                name = draw(st.sampled_from([b"__name__"] * 3 + [b"job", b"", b"\xff"]))
                inner = _label(name, draw(st.sampled_from([b"x"] * 3 + [b"", b"\xfe"])))
            elif kind == "sample":
                inner = _sample(draw(st.integers(-2, 2)), 1.0)
            elif kind == "series":
                inner = draw(_wire_fields(in_series=True))
            else:
                inner = draw(st.binary(max_size=9))
            parts.append(draw(_varint_bytes(len(inner))) + inner)
    return b"".join(parts)


def _assert_decoded_or_refused(dec: RemoteWriteDecoder, index: SeriesIndex, body: bytes) -> None:
    known = len(index)
    try:
        got = dec.decode_raw(body)
    except DataError as exc:
        assert exc.where == "request body"
        assert len(index) == known, "a refused request registers no series"
        return
    b = got.batch
    assert len(b.series_id) == len(b.ts) == len(b.value) == len(b)
    assert all(sid in index for sid in set(b.series_id.tolist()))


@settings(max_examples=300, deadline=None)
@given(_wire_fields())
def test_any_protobuf_shaped_body_is_decoded_or_refused_with_a_data_error(body: bytes) -> None:
    dec, index = _decoder()
    _assert_decoded_or_refused(dec, index, body)


@settings(max_examples=100, deadline=None)
@given(_requests(), st.data())
def test_an_encoded_request_with_bytes_changed_is_decoded_or_refused(
    series: list[tuple[dict[str, str], list[tuple[int, float]]]], data: st.DataObject
) -> None:
    raw = bytearray(write_request(series).SerializeToString())
    for _ in range(data.draw(st.integers(1, 3))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at : at + data.draw(st.integers(0, 2))] = data.draw(st.binary(max_size=3))
        if not raw:
            break
    dec, index = _decoder()
    _assert_decoded_or_refused(dec, index, bytes(raw))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=64))
def test_any_compressed_body_is_decoded_or_refused_with_a_data_error(body: bytes) -> None:
    dec = RemoteWriteDecoder(SeriesIndex(), max_decoded_bytes=1 << 12)
    try:
        dec.decode(body)
    except DataError as exc:
        assert exc.where == "request body"


@settings(max_examples=60, deadline=None)
@given(_requests(), _requests())
def test_what_a_request_decodes_to_does_not_depend_on_earlier_requests(
    earlier: list[tuple[dict[str, str], list[tuple[int, float]]]],
    later: list[tuple[dict[str, str], list[tuple[int, float]]]],
) -> None:
    fresh, fresh_index = _decoder()
    want = _rows(fresh_index, fresh.decode(encode(later)).batch)
    used, used_index = _decoder()
    used.decode(encode(earlier))
    assert _rows(used_index, used.decode(encode(later)).batch) == want


def test_series_over_the_limit_are_refused_and_the_rest_of_the_request_kept() -> None:
    index = SeriesIndex(max_series=3)
    dec = RemoteWriteDecoder(index)
    first = dec.decode(encode([({"__name__": "a"}, [(T0, 1.0)]), ({"__name__": "b"}, [(T0, 2.0)])]))
    assert first.refused_series == 0 and first.new_series == 2
    series = [
        ({"__name__": "a"}, [(T0 + 1, 1.0), (T0 + 2, 1.5)]),
        ({"__name__": "c"}, [(T0 + 1, 3.0)]),  # the last one the limit lets in
        ({"__name__": "d"}, [(T0 + 1, 4.0), (T0 + 2, 4.5)]),  # refused
        ({"__name__": "b"}, [(T0 + 1, 2.0)]),
        ({"__name__": "e"}, [(T0 + 1, 5.0)]),  # refused
    ]
    got = dec.decode(encode(series))
    assert got.series == 5 and got.new_series == 1
    assert got.refused_series == 2 and got.refused_samples == 3
    assert [(n, t, v) for n, _, t, v in _rows(index, got.batch)] == [
        ("a", T0 + 1, 1.0),
        ("a", T0 + 2, 1.5),
        ("c", T0 + 1, 3.0),
        ("b", T0 + 1, 2.0),
    ]
    assert index.find("d") is None and index.find("e") is None and len(index) == 3
    assert index.refused() == {"remote_write": 2}
    # Refused keys are not remembered as known: the same request is refused the same way again.
    again = dec.decode(encode(series))
    assert again.refused_series == 2 and len(again.batch) == 4 and dec.known_keys == 3


def test_a_request_of_only_refused_series_keeps_nothing() -> None:
    index = SeriesIndex(max_series=1)
    index.add(7, "old")
    dec = RemoteWriteDecoder(index, source="rw")
    got = dec.decode(encode([({"__name__": "new", "i": str(i)}, [(T0, 1.0)]) for i in range(4)]))
    assert len(got.batch) == 0 and got.refused_series == 4 and got.refused_samples == 4
    # A series the store loaded is known whatever the limit.
    kept = dec.decode(encode([({"__name__": "old"}, [(T0, 1.0)])]))
    assert kept.batch.series_id.tolist() == [7] and kept.refused_series == 0
    assert index.refused() == {"rw": 4}


def test_a_forgotten_series_is_registered_anew_when_written_again() -> None:
    dec, index = _decoder()
    series = [
        ({"__name__": "cpu", "pod": "a"}, [(T0, 1.0)]),
        ({"__name__": "cpu", "pod": "b"}, [(T0, 2.0)]),
    ]
    got = dec.decode(encode(series))
    a, b = got.batch.series_id.tolist()
    index.forget([a])
    assert dec.forget([a, 999]) == 1 and dec.known_keys == 1
    again = dec.decode(encode(series))
    assert again.new_series == 1 and again.batch.series_id.tolist() == [a, b]
    assert a in index and dec.known_keys == 2
    assert dec.forget([]) == 0


def test_a_refused_series_named_again_is_refused_without_decoding_its_labels_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A writer past max_series sends the same refused series in every request: decoding their
    # labels each time (and asking the index) was most of the CPU such a request cost.
    from relia.ingest import remote_write

    decoded: list[int] = []
    real = remote_write.decode_labels

    def counting(buf: bytes, start: int, end: int) -> dict[str, str]:
        decoded.append(start)
        return real(buf, start, end)

    monkeypatch.setattr(remote_write, "decode_labels", counting)
    index = SeriesIndex(max_series=2)
    dec = RemoteWriteDecoder(index, source="rw")
    series = [({"__name__": "cpu", "pod": p}, [(T0, 1.0)]) for p in "abcde"]
    first = dec.decode(encode(series))
    assert first.new_series == 2 and first.refused_series == 3 and len(decoded) == 5
    again = dec.decode(encode(series))
    assert again.refused_series == 3 and again.refused_samples == 3 and len(again.batch) == 2
    assert len(decoded) == 5  # nothing decoded: two known, three remembered as refused
    assert index.refused() == {"rw": 6}  # a series named again is counted again
    # Once the engine forgets a series, the index has room: refused ones are asked about again.
    a = first.batch.series_id.tolist()[0]
    index.forget([a])
    dec.forget([a])
    third = dec.decode(encode(series))
    assert third.new_series == 1 and third.refused_series == 3 and len(third.batch) == 2
    assert len(decoded) == 5 + 4  # the forgotten one (back in its place) and the three refused
    assert index.refused() == {"rw": 9}


# -- whole-request refusals name the timeseries; names and far-future samples ----------------


def _refusal(dec: RemoteWriteDecoder, raw: bytes) -> str:
    with pytest.raises(DataError) as caught:
        dec.decode_raw(raw)
    assert str(caught.value).endswith(f"; {NOTHING_STORED}")
    return str(caught.value)


def _labelled(*labels: tuple[bytes, bytes]) -> bytes:
    """A TimeSeries with these labels and one sample."""
    return _series(
        b"".join(field(1, 2, _label(n, v)) for n, v in labels) + field(2, 2, _sample(T0, 1.0))
    )


def test_a_refused_request_names_the_timeseries_and_says_nothing_was_stored() -> None:
    dec, index = _decoder()
    good = _labelled((b"__name__", b"rb_good"))
    repeated = _labelled((b"__name__", b"rb_bad"), (b"a", b"1"), (b"a", b"2"))
    text = _refusal(dec, good + repeated)
    assert "timeseries 1" in text and "'a' repeated" in text and "rb_bad" in text
    bad_utf8 = _labelled((b"__name__", b"m7"), (b"job", b"\xff\xfe"))
    assert "timeseries 1: the value of label 'job' is not valid UTF-8" in _refusal(
        dec, good + bad_utf8
    )
    no_name = _series(field(1, 2, _label(b"a", b"1")) + field(2, 2, _sample(T0, 1.0)))
    text = _refusal(dec, good + good + no_name)
    assert "timeseries 2 {a='1'}: malformed WriteRequest" in text and "__name__" in text
    assert len(index) == 0


@pytest.mark.parametrize(
    "labels",
    [
        ((b"__name__", b"m"), (b"", b"x")),
        ((b"__name__", b"m"), (b"a\x00b", b"x")),
        ((b"__name__", b"m\nx"),),
        ((b"__name__", b"m"), (b"\xff", b"x")),
    ],
    ids=["empty label name", "NUL in a label name", "newline in the metric name", "bad UTF-8"],
)
def test_an_empty_or_control_or_undecodable_name_is_refused(
    labels: tuple[tuple[bytes, bytes], ...],
) -> None:
    dec, index = _decoder()
    text = _refusal(dec, _labelled((b"__name__", b"ok")) + _labelled(*labels))
    assert text.startswith("request body: timeseries 1: ")
    assert len(index) == 0


def test_a_nul_in_a_label_value_is_refused_naming_the_timeseries() -> None:
    # PostgreSQL cannot store a NUL (text, jsonb): taken, it would stop the store's writes.
    dec, index = _decoder()
    poison = _labelled((b"__name__", b"nv"), (b"job", b"a\x00b"))
    text = _refusal(dec, _labelled((b"__name__", b"ok")) + poison)
    assert text.startswith("request body: timeseries 1: the value of label 'job' holds")
    assert "NUL" in text and "nv" in text and NOTHING_STORED in text
    assert len(index) == 0
    # Other control characters are valid Prometheus label values: taken.
    dec.decode_raw(_labelled((b"__name__", b"nv"), (b"msg", b"line1\nline2\tx")))
    assert len(index) == 1


def test_utf8_names_are_taken_and_their_keys_do_not_collide() -> None:
    from relia.signals import describe

    dec, index = _decoder()
    raw = (
        _labelled((b"__name__", b"kc"), (b"job", b"a"))
        + _labelled((b"__name__", b'kc{job="a"}'))
        + _labelled((b"__name__", b"kc2"), (b"foo-bar", b"x"))
    )
    dec.decode_raw(raw)
    keys = sorted(describe(index.key(sid)) for sid in index)
    assert keys == ['kc2{"foo-bar"="x"}', 'kc{job="a"}', '{"kc{job=\\"a\\"}"}']


def test_a_sample_too_far_ahead_of_the_clock_refuses_the_request() -> None:
    now = T0 + 3_600_000
    index = SeriesIndex()
    dec = RemoteWriteDecoder(index, max_future_ms=600_000, clock=lambda: now)
    ok = encode([({"__name__": "ok"}, [(now + 600_000, 1.0)])])  # at the limit: taken
    assert len(dec.decode(ok).batch) == 1
    century = now + 100 * 365 * 86_400_000
    far = [({"__name__": "ok"}, [(now + 700_000, 1.0)])]
    far += [({"__name__": "poison", "job": "p"}, [(now, 1.0), (century, 2.0)])]
    with pytest.raises(DataError) as caught:
        dec.decode(encode(far))
    text = str(caught.value)
    assert "timeseries 0 {__name__='ok'}: sample at" in text  # the first one past the limit
    assert "700.0s ahead" in text and "ingest.max_future (600s)" in text
    assert "(2 such samples in the request)" in text and text.endswith(NOTHING_STORED)
    assert [index.key(s)[0] for s in index] == ["ok"]  # poison was not registered
    # A replay of what was acknowledged before is taken whatever the clock says.
    assert len(dec.decode(encode(far), check_time=False).batch) == 3
