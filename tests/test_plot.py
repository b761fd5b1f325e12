"""Tests of the series pictures (relia.plot): what a user finds in the PNG or HTML file."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

from relia.detect.base import Detail
from relia.detect.threshold import AnomalyWindow
from relia.errors import DataError
from relia.plot import html_page, plot_series

T0 = 1_700_000_000_000
STEP = 60_000


def _series(values: list[float]) -> tuple[np.ndarray, np.ndarray, Detail]:
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    expected = np.full(n, 10.0)
    detail = Detail(
        score=np.linspace(0.0, 1.0, n),
        expected=expected,
        lower=expected - 1000.0,  # a band far wider than the data
        upper=expected + 1000.0,
        component=np.full(n, -1, np.int8),
    )
    return T0 + STEP * np.arange(n, dtype=np.int64), v, detail


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures plot_series drew (recorded as it closes them)."""
    drawn: list[Any] = []
    close = plt.close

    def record(fig: Any = None) -> None:
        drawn.append(fig)
        close(fig)

    monkeypatch.setattr(plt, "close", record)
    return drawn


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_png_is_a_png_of_the_stated_size(tmp_path: Path) -> None:
    ts, v, detail = _series([10, 11, 12, 11, 10])
    out = plot_series(tmp_path / "p.png", ts, v, detail, np.zeros(5, bool), title="cpu")
    assert out == tmp_path / "p.png"
    # 13 x 5.5 inches at 110 dpi.
    assert _png_size(out) == (1430, 605)
    assert plt.get_fignums() == []  # nothing left open: a folder of series draws many


def test_html_is_self_contained_with_the_windows_table(tmp_path: Path) -> None:
    ts, v, detail = _series([10, 11, 50, 51, 10, 10, 60, 10])
    flags = np.array([0, 0, 1, 1, 0, 0, 1, 0], bool)
    windows = [
        AnomalyWindow(2, 3, int(ts[2]), int(ts[3]), 0.91234, 3),
        AnomalyWindow(6, 6, int(ts[6]) + 250, int(ts[6]) + 250, 1.0, 6),
    ]
    detail.component[3] = 1  # the first window's peak: which part of the detector fired
    page = plot_series(
        tmp_path / "p.html", ts, v, detail, flags, title="a <b> & c", windows=windows,
        components=("above", "new_range"),
    ).read_text(encoding="utf-8")  # fmt: skip
    assert page.startswith("<!doctype html>")
    # Only the <svg> element goes in: no XML prolog, no DOCTYPE pointing at w3.org.
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert not re.search(r"""(?:href|src)\s*=\s*["']?(?:https?:)?//|url\(\s*["']?https?:""", page)
    assert "<link" not in page and "<script" not in page
    assert "<title>a &lt;b&gt; &amp; c</title>" in page and "<h2>a &lt;b&gt; &amp; c</h2>" in page
    assert "<h3>Anomalous windows (2)</h3>" in page
    assert (
        "<tr><th>start (UTC)</th><th>end (UTC)</th><th>points</th><th>peak score</th><th>by</th>"
        "</tr>" in page
    )
    assert (
        "<tr><td>2023-11-14T22:15:20Z</td><td>2023-11-14T22:16:20Z</td><td>2</td><td>0.912</td>"
        "<td>new_range</td></tr>" in page
    )
    assert (
        "<tr><td>2023-11-14T22:19:20.250Z</td><td>2023-11-14T22:19:20.250Z</td><td>1</td>"
        "<td>1.000</td><td>–</td></tr>" in page
    )


def test_html_without_windows_has_an_empty_table(tmp_path: Path) -> None:
    ts, v, detail = _series([1, 2, 3])
    page = plot_series(tmp_path / "p.html", ts, v, detail, np.zeros(3, bool), title="x")
    text = page.read_text(encoding="utf-8")
    assert "<h3>Anomalous windows (0)</h3>" in text and "<td>" not in text


@pytest.mark.parametrize("name", ["p.HTM", "p.Html", "p.htm"])
def test_htm_and_any_case_is_html(tmp_path: Path, name: str) -> None:
    ts, v, detail = _series([1, 2, 3])
    out = plot_series(tmp_path / name, ts, v, detail, np.zeros(3, bool), title="x")
    assert out.read_text(encoding="utf-8").startswith("<!doctype html>")


def test_png_suffix_in_capitals_is_png(tmp_path: Path) -> None:
    ts, v, detail = _series([1, 2, 3])
    out = plot_series(tmp_path / "p.PNG", ts, v, detail, np.zeros(3, bool), title="x")
    assert _png_size(out) == (1430, 605)


@pytest.mark.parametrize("name", ["p.svg", "p.pdf", "p"])
def test_other_suffix_is_refused_naming_the_option(tmp_path: Path, name: str) -> None:
    ts, v, detail = _series([1, 2, 3])
    with pytest.raises(DataError) as err:
        plot_series(tmp_path / name, ts, v, detail, np.zeros(3, bool), title="x")
    assert str(err.value) == f"--plot: plot must end in .png or .html, got {name!r}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_unwritable_path_is_one_data_error_naming_it(tmp_path: Path, suffix: str) -> None:
    ts, v, detail = _series([1, 2, 3])
    out = tmp_path / "missing" / f"p{suffix}"
    with pytest.raises(DataError) as err:
        plot_series(out, ts, v, detail, np.zeros(3, bool), title="x")
    assert str(err.value) == f"{out}: cannot write plot: No such file or directory"
    assert plt.get_fignums() == []


def test_anomalies_are_marked_exactly_at_the_flagged_points(
    tmp_path: Path, figures: list[Any]
) -> None:
    ts, v, detail = _series([10, 11, 50, 12, 10, 70])
    flags = np.array([0, 0, 1, 0, 0, 1], bool)
    plot_series(tmp_path / "p.png", ts, v, detail, flags, title="x")
    (fig,) = figures
    ax = fig.axes[0]
    (marks,) = ax.collections[1:]  # the band, then the anomaly markers
    assert marks.get_label() == "anomaly"
    assert marks.get_offsets()[:, 1].tolist() == [50.0, 70.0]
    # The line is the series itself, the score panel the score.
    value_line = next(line for line in ax.get_lines() if line.get_label() == "value")
    assert value_line.get_ydata().tolist() == v.tolist()
    expected_line = next(line for line in ax.get_lines() if line.get_label() == "expected")
    assert expected_line.get_ydata().tolist() == detail.expected.tolist()
    (score_line,) = fig.axes[1].get_lines()
    assert score_line.get_ydata().tolist() == detail.score.tolist()
    assert fig.axes[1].get_ylim() == (0.0, 1.02)


def test_no_anomaly_marker_without_flags(tmp_path: Path, figures: list[Any]) -> None:
    ts, v, detail = _series([10, 11, 12])
    plot_series(tmp_path / "p.png", ts, v, detail, np.zeros(3, bool), title="x")
    labels = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert labels == ["expected band", "expected", "value"]
    assert len(figures[0].axes[0].collections) == 1  # the band alone


def test_the_band_spans_lower_to_upper(tmp_path: Path, figures: list[Any]) -> None:
    ts, v, detail = _series([10, 11, 12])
    plot_series(tmp_path / "p.png", ts, v, detail, np.zeros(3, bool), title="x")
    band = figures[0].axes[0].collections[0]
    ys = band.get_paths()[0].vertices[:, 1]
    assert (ys.min(), ys.max()) == (10.0 - 1000.0, 10.0 + 1000.0)


def test_the_value_axis_fits_the_data_not_the_band_and_skips_nan(
    tmp_path: Path, figures: list[Any]
) -> None:
    ts, v, detail = _series([10, float("nan"), 20, float("inf"), 15])
    plot_series(tmp_path / "p.png", ts, v, detail, np.zeros(5, bool), title="x")
    lo, hi = figures[0].axes[0].get_ylim()
    assert (lo, hi) == (pytest.approx(10 - 0.8), pytest.approx(20 + 0.8))


@pytest.mark.parametrize(("value", "pad"), [(7.0, 1.0), (0.0, 1.0), (-500.0, 50.0)])
def test_a_flat_series_gets_room_around_its_value(
    tmp_path: Path, figures: list[Any], value: float, pad: float
) -> None:
    ts, v, detail = _series([value] * 4)
    plot_series(tmp_path / "p.png", ts, v, detail, np.zeros(4, bool), title="x")
    assert figures[0].axes[0].get_ylim() == (value - pad, value + pad)


@pytest.mark.parametrize(
    "values",
    [[], [3.0], [float("nan")] * 4, [float("inf"), float("-inf")], [7.0] * 5],
    ids=["empty", "one-point", "all-nan", "all-inf", "all-equal"],
)
@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_awkward_series_still_give_a_picture(
    tmp_path: Path, values: list[float], suffix: str
) -> None:
    ts, v, detail = _series(values)
    out = plot_series(tmp_path / f"p{suffix}", ts, v, detail, np.zeros(len(v), bool), title="x")
    if suffix == ".png":
        assert _png_size(out) == (1430, 605)
    else:
        assert "<svg" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    "title",
    ['rate(up{job="$job",instance="$instance"}[5m])', "cost $x^$", r"a $\foo$ b", "$5 and $6"],
)
def test_a_title_with_dollar_signs_is_shown_as_written(
    tmp_path: Path, figures: list[Any], title: str
) -> None:
    # A title is a file name or a query (Grafana-style `$job` variables): matplotlib would read
    # text between two `$` as TeX math, render it wrongly and crash on what it cannot parse.
    ts, v, detail = _series([1, 2, 3])
    plot_series(tmp_path / "p.png", ts, v, detail, np.zeros(3, bool), title=title)
    page = plot_series(tmp_path / "p.html", ts, v, detail, np.zeros(3, bool), title=title)
    assert [f.axes[0].get_title(loc="left") for f in figures] == [title, title]
    # The "$" glyph is drawn: the text was not taken for math, which drops the dollars.
    dollar = FT2Font(font_manager.findfont("DejaVu Sans")).get_char_index(ord("$"))
    assert f'id="DejaVuSans-{dollar:x}"' in page.read_text(encoding="utf-8")


def test_html_page_escapes_what_it_is_given_and_keeps_the_rows() -> None:
    svg = '<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "x" "http://www.w3.org/x.dtd">\n<svg a="1"/>'
    page = html_page("T<1>", svg, "rows & more", ["a<b", "c"], "<tr><td>1</td></tr>")
    assert "<title>T&lt;1&gt;</title>" in page and "<h2>T&lt;1&gt;</h2>" in page
    assert "<h3>rows &amp; more</h3>" in page
    assert "<table><tr><th>a&lt;b</th><th>c</th></tr>\n<tr><td>1</td></tr></table>" in page
    assert '<svg a="1"/>' in page and "http" not in page and "<?xml" not in page


# -- what the lines leave out, and how long series are drawn -------------------------------------


def _value_line(ax: Any) -> Any:
    return next(line for line in ax.get_lines() if line.get_label() == "value")


def _dots(ax: Any) -> list[Any]:
    """The dots drawn for values with no drawn neighbour (markers only, in the value's colour)."""
    colour = _value_line(ax).get_color()
    return [
        line
        for line in ax.get_lines()
        if line.get_linestyle() == "None" and line.get_color() == colour
    ]


def test_values_between_missing_ones_are_drawn_as_dots(tmp_path: Path, figures: list[Any]) -> None:
    # A Grafana export of series scraped at different offsets is empty every other row: the
    # line, broken at each NaN, drew nothing at all.
    nan = float("nan")
    ts, v, detail = _series([1, nan, 2, nan, 3, 4])
    plot_series(tmp_path / "p.png", ts, v, detail, np.zeros(6, bool), title="x")
    ax = figures[0].axes[0]
    (dots,) = _dots(ax)
    assert dots.get_ydata().tolist() == [1.0, 2.0]  # 3 and 4 are joined by the line
    assert dots.get_color() == _value_line(ax).get_color()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == ["expected band", "expected", "value"]  # no legend entry for the dots


def test_a_one_point_series_is_a_dot_on_an_axis_of_minutes(
    tmp_path: Path, figures: list[Any]
) -> None:
    # It drew an empty chart whose time axis ran from 2022 to 2026.
    import matplotlib.dates as mdates

    ts, v, detail = _series([5.0])
    plot_series(tmp_path / "p.png", ts, v, detail, np.zeros(1, bool), title="x")
    ax = figures[0].axes[0]
    (dots,) = _dots(ax)
    assert dots.get_ydata().tolist() == [5.0]
    lo, hi = ax.get_xlim()
    assert (hi - lo) * 86400 == pytest.approx(120)
    assert mdates.num2date(lo).timestamp() * 1000 == pytest.approx(T0 - 60_000)


def _segments(line: Any) -> list[np.ndarray]:
    """The x values (as numbers) of each stretch a line draws, split at NaN."""
    import matplotlib.dates as mdates

    x = mdates.date2num(line.get_xdata())
    y = np.asarray(line.get_ydata(), dtype=float)
    pieces = np.split(np.arange(len(y)), np.flatnonzero(~np.isfinite(y)))
    return [x[p[np.isfinite(y[p])]] for p in pieces if np.isfinite(y[p]).any()]


def test_lines_and_band_break_across_a_gap_in_time(tmp_path: Path, figures: list[Any]) -> None:
    # Three days without samples were bridged by a straight line, band and score, where the
    # dashboard lifts the pen (a pause of more than five median steps).
    ts, v, detail = _series([5.0 + np.sin(i / 20) for i in range(600)])
    ts[300:] += 3 * 86_400_000
    plot_series(tmp_path / "p.png", ts, v, detail, np.zeros(600, bool), title="x")
    ax, ax_score = figures[0].axes
    hole = (T0 + 299 * STEP, T0 + 300 * STEP + 3 * 86_400_000)
    import matplotlib.dates as mdates

    lo, hi = mdates.date2num(np.array(hole, dtype="datetime64[ms]"))
    expected_line = next(line for line in ax.get_lines() if line.get_label() == "expected")
    (score_line,) = ax_score.get_lines()
    for line in (_value_line(ax), expected_line, score_line):
        pieces = _segments(line)
        assert len(pieces) == 2
        assert pieces[0][-1] == pytest.approx(lo) and pieces[1][0] == pytest.approx(hi)
    assert len(ax.collections[0].get_paths()) == 2  # the band: one area each side
    # A pause of five steps is still one line.
    figures.clear()
    ts, v, detail = _series([1.0] * 20)
    ts[10:] += 4 * STEP
    plot_series(tmp_path / "p.png", ts, v, detail, np.zeros(20, bool), title="x")
    assert len(_segments(_value_line(figures[0].axes[0]))) == 1


def test_a_clock_that_steps_back_starts_a_new_line_not_a_return_stroke(
    tmp_path: Path, figures: list[Any]
) -> None:
    # relia detect scores such a file (with a warning): its lines ran back over themselves,
    # and the band had white triangles cut out of it.
    ts, v, detail = _series([5.0 + np.sin(i / 20) for i in range(600)])
    ts[400:] -= 180 * STEP
    page = plot_series(tmp_path / "p.html", ts, v, detail, np.zeros(600, bool), title="x")
    plot_series(tmp_path / "p.png", ts, v, detail, np.zeros(600, bool), title="x")
    for fig in figures:
        for ax in fig.axes:
            for line in ax.get_lines():
                for piece in _segments(line):
                    assert np.all(np.diff(piece) >= 0), line.get_label()
        for band in fig.axes[0].collections[:1]:
            assert len(band.get_paths()) == 2
    assert page.stat().st_size > 0


def _long(n: int) -> tuple[np.ndarray, np.ndarray, Detail, np.ndarray]:
    rng = np.random.default_rng(5)
    ts = T0 + 10_000 * np.arange(n, dtype=np.int64)
    v = np.sin(np.arange(n) / 500) + rng.normal(0, 0.1, n)
    v[n // 3] = 30.0  # one spike among half a million points
    expected = np.sin(np.arange(n) / 500)
    lower, upper = expected - 0.5, expected + 0.5
    upper[n // 2] = 50.0  # and one in the band
    detail = Detail(
        score=np.clip(np.abs(v - expected) / 3, 0, 1),
        expected=expected,
        lower=lower,
        upper=upper,
        component=np.full(n, -1, np.int8),
    )
    flags = np.zeros(n, bool)
    flags[n // 3] = True
    flags[np.arange(1000, n, n // 40)] = True  # 40 scattered anomalies, each its own marker
    return ts, v, detail, flags


def test_a_long_series_as_html_is_small_and_keeps_its_spikes_and_marks(
    tmp_path: Path, figures: list[Any]
) -> None:
    # 2M points made a 105 MB page: the band was one polygon of every point. A long series is
    # drawn as its envelope per pixel column: a few thousand vertices, the spikes kept.
    n = 500_000
    ts, v, detail, flags = _long(n)
    page = plot_series(tmp_path / "p.html", ts, v, detail, flags, title="x")
    assert page.stat().st_size < 1_500_000
    ax, ax_score = figures[0].axes
    for line in [*ax.get_lines(), *ax_score.get_lines()]:
        assert len(line.get_xdata()) < 4000, line.get_label()
    assert np.nanmax(_value_line(ax).get_ydata()) == 30.0
    assert np.nanmin(_value_line(ax).get_ydata()) == v.min()
    (score_line,) = ax_score.get_lines()
    assert np.nanmax(score_line.get_ydata()) == detail.score.max()
    (band,) = [c for c in ax.collections if c.get_label() == "expected band"]
    ys = np.concatenate([p.vertices[:, 1] for p in band.get_paths()])
    assert len(ys) < 6000 and ys.max() == 50.0 and ys.min() == detail.lower.min()
    (marks,) = [c for c in ax.collections if c.get_label() == "anomaly"]
    assert len(marks.get_offsets()) == flags.sum() == 41
    assert 30.0 in marks.get_offsets()[:, 1]


def test_thousands_of_anomalies_are_merged_only_where_they_share_a_pixel(
    tmp_path: Path, figures: list[Any]
) -> None:
    n = 500_000
    ts, v, detail, _ = _long(n)
    flags = np.zeros(n, bool)
    flags[100_000:200_000] = True  # a long anomalous stretch: 100,000 markers were drawn
    plot_series(tmp_path / "p.png", ts, v, detail, flags, title="x")
    ax = figures[0].axes[0]
    (marks,) = [c for c in ax.collections if c.get_label() == "anomaly"]
    kept = marks.get_offsets()
    assert 1000 < len(kept) < 100_000
    # Every flagged point has a marker within a pixel of it (the axes are about 1,300 by
    # 360 pixels): the picture shows where each one lies.
    bottom, top = ax.get_ylim()
    import matplotlib.dates as mdates

    x = mdates.date2num(ts[flags].astype("datetime64[ms]"))
    span = mdates.date2num(np.datetime64(int(ts[-1]), "ms")) - mdates.date2num(
        np.datetime64(int(ts[0]), "ms")
    )
    col, row = span / 1300, (top - bottom) / 400
    kx, ky = np.asarray(kept[:, 0], float), np.asarray(kept[:, 1], float)
    order = np.argsort(kx)
    kx, ky = kx[order], ky[order]
    for xi, yi in zip(x[::97], v[flags][::97], strict=True):
        near = (np.abs(kx - xi) <= col) & (np.abs(ky - yi) <= row)
        assert near.any(), (xi, yi)


def test_the_time_axis_says_utc(tmp_path: Path) -> None:
    ts, v, detail = _series([1, 2, 3])
    page = plot_series(tmp_path / "p.html", ts, v, detail, np.zeros(3, bool), title="x")
    assert "time (UTC)" in re.findall(r"<!-- (.*?) -->", page.read_text(encoding="utf-8"))
