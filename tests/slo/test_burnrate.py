"""Burn-rate alert windows: Workbook defaults for any period, Sloth AlertWindows files, and the
vectorized multi-window math."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from relia.errors import ConfigError
from relia.slo.burnrate import (
    burn_rate,
    default_alert_windows,
    load_alert_windows,
    multiwindow_firing,
    parse_alert_windows,
    trailing_sum,
    windows_for,
)
from relia.slo.spec import SLO, AlertWindow, EventsSLI, SpecSource, TimeWindow

WINDOWS_DIR = Path(__file__).resolve().parents[3] / "shared/data/slo/sloth/windows"
needs_windows = pytest.mark.skipif(
    not WINDOWS_DIR.is_dir(), reason=f"Sloth AlertWindows examples not found at {WINDOWS_DIR}"
)

DAY, HOUR, MINUTE = 86400, 3600, 60


def _table(windows: tuple[AlertWindow, ...]) -> list[tuple[str, str, float, int, int, float]]:
    return [
        (w.severity, w.name, w.budget_percent, w.long_s, w.short_s, w.burn_rate) for w in windows
    ]


def test_30_days_is_the_workbook_table() -> None:
    assert _table(default_alert_windows(30 * DAY)) == [
        ("page", "quick", 2.0, 1 * HOUR, 5 * MINUTE, 14.4),
        ("page", "slow", 5.0, 6 * HOUR, 30 * MINUTE, 6.0),
        ("ticket", "quick", 10.0, 1 * DAY, 2 * HOUR, 3.0),
        ("ticket", "slow", 10.0, 3 * DAY, 6 * HOUR, 1.0),
    ]


@needs_windows
@pytest.mark.parametrize(("days", "name"), [(28, "google-28d.yaml"), (30, "google-30d.yaml")])
def test_28_and_30_days_equal_sloths_tables_to_the_bit(days: int, name: str) -> None:
    assert default_alert_windows(days * DAY) == load_alert_windows(WINDOWS_DIR / name)


@needs_windows
def test_7_days_keeps_sloths_windows_and_its_page_quick() -> None:
    ours = default_alert_windows(7 * DAY)
    sloth = load_alert_windows(WINDOWS_DIR / "7d.yaml")
    assert [(w.long_s, w.short_s) for w in ours] == [(w.long_s, w.short_s) for w in sloth]
    assert ours[0].burn_rate == sloth[0].burn_rate == 13.44
    # The rule holds the 28-day burn rates below 28 days: shares 8, 20, 40, 40 %.
    assert [w.budget_percent for w in ours] == pytest.approx([8, 20, 40, 40])
    assert [w.burn_rate for w in ours] == pytest.approx([13.44, 5.6, 2.8, 28 / 30])


def test_90_days_keeps_the_30_day_burn_rates() -> None:
    windows = default_alert_windows(90 * DAY)
    assert [w.burn_rate for w in windows] == [14.4, 6.0, 3.0, 1.0]
    assert [w.budget_percent for w in windows] == pytest.approx([2 / 3, 5 / 3, 10 / 3, 10 / 3])


@given(st.integers(min_value=3 * DAY, max_value=400 * DAY))
def test_any_period_gives_consistent_windows(period_s: int) -> None:
    windows = default_alert_windows(period_s)
    for w in windows:
        # burn rate = share × period / long, the definition, to rounding.
        assert w.burn_rate == pytest.approx(w.budget_percent * period_s / 100 / w.long_s)
        assert 0 < w.budget_percent <= 100
        assert w.long_s <= period_s
    rates = [w.burn_rate for w in windows]
    assert rates == sorted(rates, reverse=True)
    # Between Sloth's 28-day and the Workbook's 30-day rates: no alert below 0.93x, none that
    # needs more than 14.4x.
    assert [28 / 30 * r for r in (14.4, 6, 3, 1)] <= [r + 1e-12 for r in rates]
    assert rates <= [14.4, 6.0, 3.0, 1.0]


@given(st.integers(min_value=3 * DAY, max_value=400 * DAY - 1))
def test_burn_rates_move_continuously_with_the_period(period_s: int) -> None:
    a = default_alert_windows(period_s)
    b = default_alert_windows(period_s + 1)
    for x, y in zip(a, b, strict=True):
        assert abs(x.burn_rate - y.burn_rate) < 1e-4


def test_periods_shorter_than_the_slow_ticket_window_are_refused() -> None:
    with pytest.raises(ConfigError, match="shorter than the 3d window"):
        default_alert_windows(2 * DAY)


def _slo(**kw: object) -> SLO:
    return SLO(
        service="svc",
        name="avail",
        objective=99.9,
        sli=EventsSLI(error_query="e", total_query="t"),
        **kw,  # type: ignore[arg-type]
    )


def test_windows_for_prefers_the_slos_own() -> None:
    own = (
        AlertWindow(
            severity="page", name="x", budget_percent=1, long_s=60, short_s=30, burn_rate=2
        ),
    )
    assert windows_for(_slo(alert_windows=own)) == own
    assert windows_for(_slo()) == default_alert_windows(30 * DAY)
    assert windows_for(_slo(window=TimeWindow(period_s=7 * DAY))) == default_alert_windows(7 * DAY)


def test_windows_for_names_the_spec_on_error() -> None:
    slo = _slo(window=TimeWindow(period_s=DAY), source=SpecSource(file="a.yml", path="slos[1]"))
    with pytest.raises(ConfigError, match=r"^a\.yml: document 1: slos\[1\]: SLO period 1d"):
        windows_for(slo)


# --- AlertWindows files ----------------------------------------------------------------------


@needs_windows
def test_every_example_windows_file_loads() -> None:
    files = sorted(WINDOWS_DIR.glob("*.yaml"))
    assert len(files) == 4
    for f in files:
        assert len(load_alert_windows(f)) == 4
    custom = load_alert_windows(WINDOWS_DIR / "custom-30d.yaml")
    assert _table(custom) == [
        ("page", "quick", 1.0, 30 * MINUTE, 2 * MINUTE, 14.4),
        ("page", "slow", 2.0, 3 * HOUR, 15 * MINUTE, 4.8),
        ("ticket", "quick", 5.0, 12 * HOUR, 1 * HOUR, 3.0),
        ("ticket", "slow", 5.0, 36 * HOUR, 3 * HOUR, 1.0),
    ]
    # Sloth's own test of this file expects these floats, to the bit.
    seven = load_alert_windows(WINDOWS_DIR / "7d.yaml")
    assert [w.burn_rate for w in seven] == [13.44, 3.5, 1.4000000000000001, 0.98]


GOOD = """\
apiVersion: sloth.slok.dev/v1
kind: AlertWindows
spec:
  sloPeriod: 30d
  page:
    quick: {errorBudgetPercent: 2, shortWindow: 5m, longWindow: 1h}
    slow: {errorBudgetPercent: 5, shortWindow: 30m, longWindow: 6h}
  ticket:
    quick: {errorBudgetPercent: 10, shortWindow: 2h, longWindow: 1d}
    slow: {errorBudgetPercent: 10, shortWindow: 6h, longWindow: 3d}
"""


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "w.yaml"
    p.write_text(text)
    return p


def test_a_good_file_loads_and_checks_the_period(tmp_path: Path) -> None:
    p = _write(tmp_path, GOOD)
    assert load_alert_windows(p) == default_alert_windows(30 * DAY)
    assert load_alert_windows(p, period_s=30 * DAY) == default_alert_windows(30 * DAY)
    with pytest.raises(ConfigError, match=r"w\.yaml:4: spec\.sloPeriod: windows are for a 30d"):
        load_alert_windows(p, period_s=28 * DAY)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("shortWindow: 5m,", "", r"w\.yaml:6: spec\.page\.quick\.shortWindow: Field required"),
        ("kind: AlertWindows", "kind: Windows", r"w\.yaml:2: kind: Input should be 'AlertWindows'"),
        (
            "longWindow: 1d",
            "longWindow: 1x",
            r"w\.yaml:9: spec\.ticket\.quick\.longWindow: invalid",
        ),
        ("shortWindow: 6h", "shortWindow: 3d", r"spec\.ticket\.slow\.shortWindow: short window 3d"),
        ("longWindow: 3d", "longWindow: 31d", r"spec\.ticket\.slow\.longWindow: long window 31d"),
        ("errorBudgetPercent: 5", "errorBudgetPercent: 500", r"errorBudgetPercent: Input should"),
        ("  page:", "  pager:", r"spec\.pager: unknown field 'pager'; did you mean 'page'\?"),
    ],
)
def test_errors_name_file_line_and_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in GOOD
    p = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError, match=message):
        load_alert_windows(p)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_alert_windows(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"w\.yaml:2: not valid YAML"):
        load_alert_windows(_write(tmp_path, "a: [\nb: c"))
    with pytest.raises(ConfigError, match="expected one AlertWindows document, found 2"):
        load_alert_windows(_write(tmp_path, GOOD + "---\n" + GOOD))
    with pytest.raises(ConfigError, match="expected an AlertWindows mapping"):
        parse_alert_windows([1, 2], "x.yaml")


# --- vectorized math -------------------------------------------------------------------------


def test_trailing_sum_and_burn_rate_by_hand() -> None:
    np.testing.assert_array_equal(trailing_sum([1, 2, 3, 4], 2), [1, 3, 5, 7])
    np.testing.assert_array_equal(trailing_sum([1, 2, 3], 5), [1, 3, 6])
    rate = burn_rate([1, 0, 5], [1000, 0, 100], 0.001)
    assert rate[0] == pytest.approx(1.0)
    assert np.isnan(rate[1])
    assert rate[2] == pytest.approx(50.0)
    with pytest.raises(ValueError):
        trailing_sum([1.0], 0)


def _minutes(*segments: tuple[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-minute bad and total counts at 1000 requests a minute, burning ``b``x a 99.9 % SLO's
    budget for ``n`` minutes, segment after segment."""
    bad = np.concatenate([np.full(n, b * 1.0) for n, b in segments])  # 1x = 1 per 1000
    return bad, np.full(bad.size, 1000.0)


def test_a_20x_burn_pages_after_43_minutes_and_stops_right_after() -> None:
    bad, total = _minutes((600, 0.0), (90, 20.0), (120, 0.0))
    fire = multiwindow_firing(
        bad, total, step_s=60, error_budget=0.001, windows=default_alert_windows(30 * DAY)
    )["page"]
    first = int(np.argmax(fire))
    # 1h window over 14.4x: 20 × m / 60 > 14.4 → m > 43.2, the 44th minute of the burn.
    assert first == 600 + 43
    # The 5m window drops below 14.4x in the second minute after the end (20 × 3/5 = 12).
    end = 600 + 90
    assert fire[end - 1] and fire[end] and not fire[end + 1 :].any()


def test_a_2x_burn_tickets_but_never_pages() -> None:
    bad, total = _minutes((3 * 1440, 2.0))
    fired = multiwindow_firing(
        bad, total, step_s=60, error_budget=0.001, windows=default_alert_windows(30 * DAY)
    )
    assert fired["ticket"].all()
    assert not fired["page"].any()


def test_min_events_keeps_a_quiet_night_from_paging() -> None:
    bad = np.zeros(120)
    bad[60:] = 1.0  # every request fails for an hour...
    total = np.ones(120)  # ...but there is one a minute
    kw = dict(step_s=60, error_budget=0.001, windows=default_alert_windows(30 * DAY)[:1])
    assert multiwindow_firing(bad, total, **kw)["page"].any()  # type: ignore[arg-type]
    quiet = multiwindow_firing(bad, total, min_events=100, **kw)  # type: ignore[arg-type]
    assert not quiet["page"].any()


def test_windows_must_fit_the_step() -> None:
    with pytest.raises(ValueError, match="not multiples"):
        multiwindow_firing(
            [0.0], [1.0], step_s=7, error_budget=0.01, windows=default_alert_windows(30 * DAY)
        )


# --- edges the cases above leave open (mutation audit) ----------------------------------------

_EDGE = AlertWindow(severity="page", name="q", budget_percent=2, long_s=180, short_s=60,
                    burn_rate=2.0)  # fmt: skip


def test_a_burn_exactly_at_the_threshold_does_not_fire() -> None:
    # 2 bad of 100 is an error ratio of 2 %: exactly 2x a 1 % budget, not above it.
    at = multiwindow_firing([2.0] * 4, [100.0] * 4, step_s=60, error_budget=0.01, windows=[_EDGE])
    assert not at["page"].any()
    above = multiwindow_firing([3.0] * 4, [100.0] * 4, step_s=60, error_budget=0.01,
                               windows=[_EDGE])  # fmt: skip
    assert above["page"].all()


def test_min_events_counts_the_long_window_and_lets_exactly_that_many_through() -> None:
    # Every request fails, 10 a minute. The 3-minute long window holds 10, 20, 30, 30 events
    # (the 1-minute short window only 10): with min_events=30 it fires from the third minute.
    fire = multiwindow_firing([10.0] * 4, [10.0] * 4, step_s=60, error_budget=0.01,
                              windows=[_EDGE], min_events=30)["page"]  # fmt: skip
    assert fire.tolist() == [False, False, True, True]


def test_short_windows_must_fit_the_step_too() -> None:
    odd = AlertWindow(severity="page", name="q", budget_percent=2, long_s=120, short_s=90,
                      burn_rate=2.0)  # fmt: skip
    with pytest.raises(ValueError, match="not multiples"):
        multiwindow_firing([0.0], [1.0], step_s=60, error_budget=0.01, windows=[odd])


def test_a_long_window_as_long_as_the_period_is_allowed(tmp_path: Path) -> None:
    # A 3-day period: the slow ticket's 3d long window spans exactly the period, which is fine.
    windows = load_alert_windows(_write(tmp_path, GOOD.replace("sloPeriod: 30d", "sloPeriod: 3d")))
    assert [w.long_s for w in windows] == [HOUR, 6 * HOUR, DAY, 3 * DAY]


def test_burn_rates_round_as_sloths_go_code_does() -> None:
    # Sloth computes percent x period hours / 100 / window hours, with Go's Duration.Hours()
    # (whole hours + the rest in ns / 3.6e12); floats are Sloth's only in that order:
    # - 42 % of 90 days over 1h: 42 x 2160 = 90720 (exact), / 100 -> the double nearest 907.2,
    #   / 1 -> 907.2; 42 / 100 x 2160 would round twice and give 907.1999999999999.
    text = GOOD.replace("sloPeriod: 30d", "sloPeriod: 90d").replace("Percent: 2,", "Percent: 42,")
    assert parse_alert_windows(yaml.safe_load(text))[0].burn_rate == 907.2
    # - a 100m window: Go's Hours() is 1 + 2.4e12 / 3.6e12 = 1 + 0.6666666666666666
    #   = 1.6666666666666665 (not 6000 / 3600 = 1.6666666666666667); 10 % of 30 days is 72
    #   hours, and 72 / 1.6666666666666665 rounds to 43.2 (72 / 1.6666666666666667 is 43.199999…).
    text = GOOD.replace("shortWindow: 2h, longWindow: 1d", "shortWindow: 10m, longWindow: 100m")
    assert parse_alert_windows(yaml.safe_load(text))[2].burn_rate == 43.2


def test_a_period_of_minutes_is_told_how_a_month_is_written() -> None:
    # OpenSLO's own timeslices example writes `duration: 1m` meaning a month.
    with pytest.raises(
        ConfigError,
        match=r"SLO period 1m is shorter .*1m is one minute; a month is 30d, or 1M in OpenSLO",
    ):
        default_alert_windows(60)
    with pytest.raises(ConfigError) as info:
        default_alert_windows(2 * 86400)
    assert "a month" not in str(info.value)
