"""Edges of SLO evaluation (relia.slo.evaluate) the end-to-end cases in test_report.py leave
open: the evaluation grid, how samples land on it, good-query counts and finding episodes."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

from relia.slo import budget as B
from relia.slo import evaluate as E
from relia.slo.spec import SLO, EventsSLI, RawSLI, TimeWindow
from relia.sources.prometheus import RangeSeries

DAY = 86_400
END = 1_714_564_800_000  # 2024-05-01T12:00:00Z, on the hour
STEP_MS = 300_000


def _slo(**kw: Any) -> SLO:
    base: dict[str, Any] = {
        "service": "shop",
        "name": "checkout",
        "objective": 99.0,
        "window": TimeWindow(period_s=7 * DAY),
        "sli": EventsSLI(error_query="errors", total_query="total"),
    }
    base.update(kw)
    return SLO.model_validate(base)


class Canned:
    """A Prometheus stand-in: each query (by name) answers the given samples, as they are."""

    def __init__(self, answers: dict[str, list[tuple[int, float]]]) -> None:
        self.answers = answers

    def query_range(self, query: str, start: int, end: int, step: float) -> list[RangeSeries]:
        samples = self.answers.get(query)
        if samples is None:
            return []
        ts = np.array([t for t, _ in samples], dtype=np.int64)
        return [RangeSeries({}, ts, np.array([v for _, v in samples], dtype=np.float64))]


def test_occurrences_slos_evaluate_on_the_step_grid_whatever_their_timeslice_window() -> None:
    # The timeslice window only matters to slice methods: an occurrences SLO naming an hour
    # slice is still evaluated every 5 minutes (12:10 stays 12:10, not 12:00).
    slo = _slo(timeslice_window_s=3600)
    assert E.evaluation_end_ms(slo, END + 600_000 + 1, 300) == END + 600_000


def test_samples_before_the_range_or_off_the_step_grid_are_left_out() -> None:
    # Three steps, 11:50, 11:55 and 12:00. A sample one step before the range (11:45) must not
    # wrap around onto the last step, and one off the grid (11:57:30) must not land on 11:55.
    start = END - 2 * STEP_MS
    total = [(start - STEP_MS, 7.0), (start, 1.0), (start + STEP_MS + 150_000, 5.0)]
    # An increase() query answers counts per step, used as they are.
    slo = _slo(sli=EventsSLI(error_query="errors", total_query="sum(increase(t[{{.window}}]))"))
    client = Canned({"sum(increase(t[5m]))": total})
    _, counts = E.fetch_counts(client, slo, start, END, 300)
    assert counts[0] == 1.0 and np.isnan(counts[1:]).all()


def test_good_queries_count_every_event_bad_when_no_good_series_answers() -> None:
    # 10 requests a second over a 5 minute step: 3,000 events. No good series at all means no
    # good events (as no error series means no errors): all 3,000 are bad.
    slo = _slo(sli=EventsSLI(good_query="good", total_query="total"))
    bad, total = E.fetch_counts(Canned({"total": [(END, 10.0)]}), slo, END, END, 300)
    assert total.tolist() == [3000.0] and bad.tolist() == [3000.0]


def test_good_above_total_counts_no_bad_events_never_negative_ones() -> None:
    # Good scraped a moment after total can exceed it: 10.5 good of 10 a second is 0 bad, not
    # -150 bad events that would give budget back.
    slo = _slo(sli=EventsSLI(good_query="good", total_query="total"))
    client = Canned({"total": [(END, 10.0)], "good": [(END, 10.5)]})
    bad, total = E.fetch_counts(client, slo, END, END, 300)
    assert bad.tolist() == [0.0]


def _burning(slo: SLO, end_ms: int, hot_steps: int = 12, hot_bad: float = 600.0) -> E.SloStatus:
    """A week of 5-minute steps of 3,000 requests, 0.1 % bad; ``hot_bad`` bad a step (600:
    20 % = 20x a 1 % budget) in the last ``hot_steps`` steps."""
    n = 7 * DAY // 300
    total = np.full(n, 3000.0)
    bad = np.full(n, 3.0)
    bad[n - hot_steps :] = hot_bad
    return E.status_from_counts(slo, bad, total, end_ms=end_ms, step_s=300)


def test_a_finding_goes_on_while_evaluations_are_the_gap_and_two_steps_apart() -> None:
    # gap 10 minutes + two 5-minute steps: evaluations 20 minutes apart continue the episode;
    # 25 minutes apart start a new one.
    slo = _slo(alerting={"name": "Burn"})
    tracker = E.SloFindings(gap_ms=600_000)
    [first] = tracker.update([_burning(slo, END)])
    [same] = tracker.update([_burning(slo, END + 1_200_000)])
    assert same.id == first.id and same.start == END
    [new] = tracker.update([_burning(slo, END + 1_200_000 + 1_500_000)])
    assert new.id != first.id and new.start == END + 2_700_000


def test_a_page_finding_names_the_window_furthest_over_its_threshold() -> None:
    # Six hours at 20x a 7-day SLO's budget: both pages fire, 1h at 20 / 13.44 = 1.5x its
    # threshold, 6h at 20 / 5.6 = 3.6x its threshold. The summary names the 6h one.
    slo = _slo(alerting={"name": "Burn"})
    found = E.SloFindings(gap_ms=600_000).update([_burning(slo, END, hot_steps=72)])
    [f] = [x for x in found if x.key == "shop-checkout:page"]
    assert f.evidence["firing"] == ["quick", "slow"]
    assert "20.0x over 6h" in f.summary and "threshold 5.6x" in f.summary


def test_increase_queries_written_with_a_space_are_counts_too() -> None:
    # PromQL allows "increase (x[5m])": still events per step, not a rate to multiply by 300.
    slo = _slo(sli=EventsSLI(error_query="e", total_query="sum(increase (t[{{.window}}]))"))
    _, total = E.fetch_counts(Canned({"sum(increase (t[5m]))": [(END, 42.0)]}), slo, END, END, 300)
    assert total.tolist() == [42.0]


def test_counting_queries_the_importer_writes_are_counts_not_rates() -> None:
    # OpenSLO thresholdMetric under Occurrences counts points with count_over_time, and a
    # non-counter ratio metric sums with sum_over_time: 6 points in a step are 6 events, not
    # 6 × 300 (what a rate of 6 a second would be).
    good = "sum(count_over_time(((lat) < 500)[{{.window}}:]))"
    total = "sum(count_over_time((lat)[{{.window}}:]))"
    slo = _slo(sli=EventsSLI(good_query=good, total_query=total))
    client = Canned(
        {
            "sum(count_over_time((lat)[5m:]))": [(END, 6.0)],
            "sum(count_over_time(((lat) < 500)[5m:]))": [(END, 4.0)],
        }
    )
    bad, total_counts = E.fetch_counts(client, slo, END, END, 300)
    assert total_counts.tolist() == [6.0] and bad.tolist() == [2.0]
    summed = _slo(
        sli=EventsSLI(
            error_query="sum(sum_over_time((errs)[{{.window}}:]))",
            total_query="sum(sum_over_time((reqs)[{{.window}}:]))",
        )
    )
    client = Canned(
        {
            "sum(sum_over_time((reqs)[5m:]))": [(END, 50.0)],
            "sum(sum_over_time((errs)[5m:]))": [(END, 5.0)],
        }
    )
    assert [a.tolist() for a in E.fetch_counts(client, summed, END, END, 300)] == [[5.0], [50.0]]


def test_one_minute_slices_are_queried_over_at_least_the_minimum_range() -> None:
    # rate(x[1m]) needs two samples inside one minute: with 1m scrapes it is mostly empty. The
    # 1m step keeps, but {{.window}} becomes 5m; a count over 5m is a fifth of it per step.
    slo = _slo(
        budgeting="ratio_timeslices",
        timeslice_window_s=60,
        sli=EventsSLI(
            error_query="sum(increase(e[{{.window}}]))", total_query="sum(increase(t[{{.window}}]))"
        ),
    )
    assert E.step_for(slo) == 60
    client = Canned({"sum(increase(t[5m]))": [(END, 600.0)], "sum(increase(e[5m]))": [(END, 5.0)]})
    bad, total = E.fetch_counts(client, slo, END, END, 60)
    assert total.tolist() == [120.0] and bad.tolist() == [1.0]
    # A rate over 5m is still per second: times the 60 s step.
    rated = _slo(
        budgeting="ratio_timeslices",
        timeslice_window_s=60,
        sli=EventsSLI(
            error_query="sum(rate(e[{{.window}}]))", total_query="sum(rate(t[{{.window}}]))"
        ),
    )
    client = Canned({"sum(rate(t[5m]))": [(END, 2.0)], "sum(rate(e[5m]))": [(END, 0.5)]})
    assert [a.tolist() for a in E.fetch_counts(client, rated, END, END, 60)] == [[30.0], [120.0]]
    # The minimum is a setting: 2m (twice a 1m scrape interval) gives sharper slices.
    client = Canned({"sum(increase(t[2m]))": [(END, 240.0)], "sum(increase(e[2m]))": [(END, 2.0)]})
    bad, total = E.fetch_counts(client, slo, END, END, 60, min_range_s=120)
    assert total.tolist() == [120.0] and bad.tolist() == [1.0]


def test_raw_slis_count_their_budget_in_steps_not_events() -> None:
    # An error ratio has no event counts: each step with data weighs one. Calling those
    # "events" showed 3 / 4 "events" for half a million requests.
    slo = _slo(
        sli=RawSLI(error_ratio_query="sum(rate(e[{{.window}}])) / sum(rate(t[{{.window}}]))")
    )
    n = 7 * DAY // 300
    bad, total = B.raw_ratio_events(np.full(n, 0.002))
    st = E.status_from_counts(slo, bad, total, end_ms=END, step_s=300)
    assert st.unit == "steps" and st.to_dict()["error_budget"]["unit"] == "steps"
    assert st.events == n
    events = _slo(sli=EventsSLI(error_query="e", total_query="t"))
    assert E.status_from_counts(events, bad, total, end_ms=END, step_s=300).unit == "events"


def test_at_a_calendar_boundary_the_new_period_is_empty_not_the_last_step() -> None:
    # Weekly periods from Monday 2024-04-01 00:00 UTC; evaluated exactly at Monday 2024-04-29
    # 00:00 the new period has no steps yet. The previous period's last step is not its data.
    slo = _slo(
        window=TimeWindow(
            period_s=7 * DAY, rolling=False, calendar_start=datetime(2024, 4, 1), timezone="UTC"
        ),
        alerting={"name": "Burn"},
    )
    boundary = int(datetime(2024, 4, 29, tzinfo=UTC).timestamp() * 1000)
    n = 3 * DAY // 300
    total = np.full(n, 600.0)
    bad = np.full(n, 60.0)  # 10 % errors: 10x the 1 % budget
    st = E.status_from_counts(slo, bad, total, end_ms=boundary, step_s=300)
    assert st.window_start_ms == boundary
    # As a window without samples: no data, so no SLI and no budget spent.
    assert math.isnan(st.events) and math.isnan(st.sli) and math.isnan(st.spent_ratio)
    assert st.burn_down.size == 0
    # Burn-rate alerts look back across the boundary: the burn before it still pages.
    assert any(a.firing for a in st.alerts if a.window.severity == "page")
    # One step later the window is that step.
    later = E.status_from_counts(slo, bad, total, end_ms=boundary + 300_000, step_s=300)
    assert later.window_start_ms == boundary and later.events == 600


def test_a_budget_that_lasts_past_the_horizon_never_runs_out() -> None:
    # 3 bad in 3,000,000 a step: burn 3.3e-7, exhaustion at 1.8e12 s, the year 59520, which
    # format_ms cannot write (the report crashed); float noise (3e-15 bad) went past time_t.
    total = np.full(2016, 3e6)
    for bad in (1e-3, 3e-15 * 1000):
        st = E.status_from_counts(_slo(), np.full(2016, bad), total, end_ms=END, step_s=300)
        assert st.current_burn > 0 and st.remaining_ratio > 0
        assert st.exhaustion_s == math.inf and st.exhaustion_at_ms is None
        assert st.to_dict()["exhaustion"] == {"seconds": None, "at": None}
    # Just inside the horizon it is a date; a status made by hand past it, or past 9999, is not.
    st = E.status_from_counts(_slo(), np.full(2016, 1.0), total, end_ms=END, step_s=300)
    inside = dataclasses.replace(st, exhaustion_s=E.EXHAUSTION_HORIZON_S)
    assert inside.exhaustion_at_ms == END + round(E.EXHAUSTION_HORIZON_S * 1000)
    assert inside.to_dict()["exhaustion"]["at"] == "2124-05-02T12:00:00Z"
    past = dataclasses.replace(st, exhaustion_s=E.EXHAUSTION_HORIZON_S + 1)
    assert past.exhaustion_at_ms is None
    assert past.to_dict()["exhaustion"] == {"seconds": None, "at": None}
    late = dataclasses.replace(st, at_ms=253_402_300_799_000 - 86_400_000, exhaustion_s=2 * DAY)
    assert late.exhaustion_at_ms is None and late.to_dict()["exhaustion"]["at"] is None
