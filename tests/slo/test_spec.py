"""The SLO model's helpers: Prometheus durations in whole seconds, and back; the unit of an
events query (a per-second rate or a count per window)."""

from __future__ import annotations

import pytest

from relia.slo.spec import (
    EventsSLI,
    counts_per_window,
    format_duration,
    parse_duration_seconds,
    window_unit,
)

DAY = 86400


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("28d", 28 * DAY),
        ("4w", 28 * DAY),
        ("1y", 365 * DAY),
        ("2000ms", 2),
        (" 1h ", 3600),
    ],
)
def test_durations_in_whole_seconds(text: str, seconds: int) -> None:
    assert parse_duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "1hx2m", "1h 30m", "h", "-1h", "1.5h", "30"])
def test_unreadable_durations_are_refused_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match=rf"invalid duration '{text.strip()}'"):
        parse_duration_seconds(text)


def test_a_duration_must_be_a_positive_whole_number_of_seconds() -> None:
    with pytest.raises(ValueError, match="duration '0s' must be positive"):
        parse_duration_seconds("0s")
    with pytest.raises(ValueError, match="duration '1500ms' is not a whole number of seconds"):
        parse_duration_seconds("1500ms")


@pytest.mark.parametrize(
    ("seconds", "text"), [(300, "5m"), (5400, "1h30m"), (28 * DAY, "28d"), (DAY + 1, "1d1s")]
)
def test_format_duration_writes_the_shortest_form(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration_seconds(text) == seconds


def test_a_duration_past_what_prometheus_can_express_is_refused() -> None:
    # Prometheus keeps durations in int64 nanoseconds (about 292 years): a longer window would
    # give rules that promtool refuses and budgets computed over nonsense.
    assert parse_duration_seconds("292y") == 292 * 365 * 86_400
    for text in ("293y", "99999999999999999999999d"):
        with pytest.raises(ValueError, match=rf"duration '{text}' is longer than Prometheus"):
            parse_duration_seconds(text)


@pytest.mark.parametrize(
    ("query", "unit"),
    [
        ("sum(rate(x[{{.window}}]))", "rate"),
        ("sum by (job) (irate (x{code=~'5..'}[{{ .window }}]))", "rate"),
        ("sum(increase(x[{{.window}}]))", "count"),
        # The importers' wrapped queries: subqueries inside counting functions.
        ("sum(count_over_time(((lat) < 500)[{{.window}}:]))", "count"),
        ("sum(sum_over_time((errors)[{{.window}}:1m]))", "count"),
        ("sum(increase((sum(x))[{{.window}}:]))", "count"),
        # A bracket inside a label value is not a range.
        ('sum(rate(x{path="/a[(b"}[{{.window}}]))', "rate"),
        # What cannot be classified: a recorded rate, a function that neither rates nor counts.
        ("sum(job:requests:rate{{.window}})", None),
        ("sum(avg_over_time(x[{{.window}}]))", None),
    ],
)
def test_window_unit_reads_the_function_each_window_range_is_given_to(
    query: str, unit: str | None
) -> None:
    assert window_unit(query) == unit
    assert counts_per_window(query) is (unit == "count")


def test_a_query_that_both_rates_and_counts_is_refused() -> None:
    with pytest.raises(ValueError, match="both to a rate function"):
        window_unit("sum(rate(x[{{.window}}])) + sum(increase(y[{{.window}}]))")


def test_an_events_sli_whose_queries_differ_in_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="good_query answers a count per window"):
        EventsSLI(
            good_query="sum(count_over_time((x < 5)[{{.window}}:]))",
            total_query="sum(rate(x[{{.window}}]))",
        )


@pytest.mark.parametrize("text", ["\u0661\u0665m", "\uff11h", "1\u0660d"])
def test_a_duration_takes_ascii_digits_only(text: str) -> None:
    # The grammar of relia.yaml's durations: other scripts' digits are no number.
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration_seconds(text)
