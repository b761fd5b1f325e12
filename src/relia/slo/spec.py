"""The SLO model every spec format is read into.

relia's own YAML, Sloth ``prometheus/v1`` and OpenSLO v1 all become a list of :class:`SLO`. The
model holds no I/O and no defaults that depend on the format it came from: the importers decide
those. Durations are whole seconds (``int``) so window arithmetic is exact; the objective is a
percent in (0, 100), as Sloth and relia's YAML write it (OpenSLO's ``target: 0.999`` becomes
``99.9``).
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "AlertSeveritySpec",
    "AlertWindow",
    "AlertingSpec",
    "BudgetingMethod",
    "EventsSLI",
    "RawSLI",
    "SLI",
    "SLO",
    "SpecSource",
    "ThresholdSLI",
    "TimeWindow",
    "COUNT_FUNCTIONS",
    "RATE_FUNCTIONS",
    "counts_per_window",
    "format_duration",
    "parse_duration_seconds",
    "window_functions",
    "window_unit",
]

# ASCII digits only, as relia.yaml durations: `\d` would take "١٥m" as 15 minutes.
_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
#: Prometheus keeps durations in int64 nanoseconds: nothing longer (about 292 years) is valid.
_MAX_SECONDS = (2**63 - 1) // 1_000_000_000


def parse_duration_seconds(text: str) -> int:
    """Parse a Prometheus-style duration (``5m``, ``1h30m``, ``30d``, ``2w``) into whole seconds.

    Raises ``ValueError`` with a message naming the text when it is not a positive whole number
    of seconds.
    """
    text = text.strip()
    pos, total = 0, 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        number, unit = int(match.group(1)), match.group(2)
        if unit == "ms":
            if number % 1000:
                raise ValueError(f"duration {text!r} is not a whole number of seconds")
            total += number // 1000
        else:
            total += number * _UNIT_SECONDS[unit]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"invalid duration {text!r} (expected e.g. 5m, 1h, 30d, 2w)")
    if total <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    if total > _MAX_SECONDS:
        raise ValueError(
            f"duration {text!r} is longer than Prometheus can express (about 292 years)"
        )
    return total


def format_duration(seconds: int) -> str:
    """Write whole seconds as the shortest Prometheus duration (``300`` → ``5m``, ``86400`` →
    ``1d``, ``5400`` → ``1h30m``). Weeks and years are not used, as Sloth does not."""
    if seconds <= 0:
        raise ValueError(f"duration must be positive, got {seconds} s")
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


#: Functions whose value over a ``{{.window}}`` range is a per-second rate.
RATE_FUNCTIONS = frozenset({"rate", "irate"})
#: Functions whose value over a ``{{.window}}`` range is a count of events in that range.
COUNT_FUNCTIONS = frozenset({"increase", "delta", "changes", "count_over_time", "sum_over_time"})

_WINDOW_PLACEHOLDER = re.compile(r"\{\{\s*\.window\s*\}\}")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_FUNCTION_NAME = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*$")


def window_functions(query: str) -> list[str | None]:
    """For each ``[{{.window}}`` range in ``query``, the function it is the argument of
    (``sum(rate(x[{{.window}}]))`` → ``["rate"]``); None where the placeholder is not in a range
    or the range is not a function's argument."""
    # Blank out string literals (a label value may hold brackets) keeping every offset.
    text = _STRING.sub(lambda m: '"' + " " * (len(m.group()) - 2) + '"', query)
    out: list[str | None] = []
    for m in _WINDOW_PLACEHOLDER.finditer(text):
        before = text[: m.start()].rstrip()
        if not before.endswith("["):
            out.append(None)
            continue
        # Walk back from the range to the parenthesis it sits in, skipping balanced groups
        # (a subquery's own parentheses: ``count_over_time((x < 5)[{{.window}}:])``).
        depth, pos = 0, len(before) - 1
        while pos >= 0:
            c = before[pos]
            if c == ")":
                depth += 1
            elif c == "(":
                if depth == 0:
                    break
                depth -= 1
            pos -= 1
        name = _FUNCTION_NAME.search(before[:pos]) if pos >= 0 else None
        out.append(name.group(1) if name else None)
    return out


def window_unit(query: str) -> Literal["count", "rate"] | None:
    """``"count"`` when every ``{{.window}}`` range of ``query`` is given to a counting function
    (:data:`COUNT_FUNCTIONS`), ``"rate"`` when one is given to ``rate``/``irate`` (and none to a
    counting function), None when neither can be seen (a recorded rate, ``avg_over_time``).
    Raises ValueError when ranges go both to rate and to counting functions."""
    names = window_functions(query)
    counting = [n in COUNT_FUNCTIONS for n in names]
    rating = [n in RATE_FUNCTIONS for n in names]
    if any(counting) and any(rating):
        raise ValueError(
            "the query gives {{.window}} ranges both to a rate function (rate, irate) and to a "
            "counting function (increase, count_over_time, sum_over_time, ...): relia cannot "
            "tell whether it answers events per second or events per window"
        )
    if names and all(counting):
        return "count"
    return "rate" if any(rating) else None


def counts_per_window(query: str) -> bool:
    """Whether an events query answers a count of events per ``{{.window}}`` (True), or a
    per-second rate (False): the one rule that reports and Prometheus rules both follow.

    Counts when every ``{{.window}}`` range is the argument of a counting function
    (:data:`COUNT_FUNCTIONS`: ``increase``, ``count_over_time``, ``sum_over_time``, ...).
    Anything else is a per-second rate: ``rate``/``irate`` are, and a query that cannot be
    classified (a recorded rate, ``avg_over_time``) is taken as one, Sloth's convention for
    events queries."""
    return window_unit(query) == "count"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SpecSource(_Frozen):
    """Where a spec came from, for error messages: ``file``, the ``line`` the SLO starts on
    (None when not read from a file), YAML ``document`` (0-based) and the ``path`` of the SLO
    inside it (``slos[2]``). ``str()`` gives ``FILE:LINE: document N: path``, as the loader's
    own problems read."""

    file: str = "<memory>"
    line: int | None = None
    document: int = 0
    path: str = ""

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}" if self.line else self.file]
        parts.append(f"document {self.document + 1}")
        if self.path:
            parts.append(self.path)
        return ": ".join(parts)


class EventsSLI(_Frozen):
    """A ratio of event counts: ``error_query`` or ``good_query``, over ``total_query``.

    Queries are PromQL with ``{{.window}}`` where the range goes (Sloth's convention), e.g.
    ``sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))``.
    """

    kind: Literal["events"] = "events"
    error_query: str | None = None
    good_query: str | None = None
    total_query: str

    @model_validator(mode="after")
    def _one_numerator(self) -> EventsSLI:
        if (self.error_query is None) == (self.good_query is None):
            raise ValueError("give exactly one of error_query and good_query")
        # Report and rules both read the unit from the queries (counts_per_window): the
        # numerator and the total must be in the same unit, or bad = total - good mixes them.
        numerator = "error_query" if self.error_query is not None else "good_query"
        units = {
            numerator: window_unit(self.error_query or self.good_query or ""),
            "total_query": window_unit(self.total_query),
        }
        if None not in units.values() and len(set(units.values())) > 1:
            what = {"count": "a count per window", "rate": "a per-second rate"}
            raise ValueError(
                f"{numerator} answers {what[str(units[numerator])]} but total_query answers "
                f"{what[str(units['total_query'])]}; use the same kind of function in both "
                "(rate() in both, or increase() in both)"
            )
        return self


class RawSLI(_Frozen):
    """An error ratio given directly by one query (Sloth's ``raw.error_ratio_query``)."""

    kind: Literal["raw"] = "raw"
    error_ratio_query: str


class ThresholdSLI(_Frozen):
    """A good/bad decision per time slice: a slice is good when ``query op value`` holds
    (OpenSLO ``thresholdMetric``), e.g. p99 latency ``lte`` 0.3."""

    kind: Literal["threshold"] = "threshold"
    query: str
    op: Literal["lt", "lte", "gt", "gte"]
    value: float


SLI = Annotated[EventsSLI | RawSLI | ThresholdSLI, Field(discriminator="kind")]


class BudgetingMethod(enum.StrEnum):
    """How the error budget is counted (OpenSLO's three methods).

    - ``occurrences``: bad events over all events in the window.
    - ``timeslices``: the window is cut into slices; a slice is good when its own SLI meets
      ``timeslice_target``; the SLO counts good slices over all slices.
    - ``ratio_timeslices``: per slice the good/total ratio is computed, and the SLO is the mean of
      those ratios.
    """

    OCCURRENCES = "occurrences"
    TIMESLICES = "timeslices"
    RATIO_TIMESLICES = "ratio_timeslices"


class TimeWindow(_Frozen):
    """The SLO period: ``rolling`` over the last ``period_s``, or calendar-aligned periods that
    start at ``calendar_start`` in ``timezone`` (IANA name)."""

    period_s: int = Field(30 * 86400, gt=0)
    rolling: bool = True
    calendar_start: datetime | None = None
    timezone: str | None = None

    @model_validator(mode="after")
    def _calendar_needs_start(self) -> TimeWindow:
        if not self.rolling and self.calendar_start is None:
            raise ValueError("a calendar-aligned window needs calendar_start")
        return self


class AlertWindow(_Frozen):
    """One multi-window burn-rate alert: fire when the burn rate over both ``long_s`` and
    ``short_s`` exceeds ``burn_rate``, which stands for spending ``budget_percent`` % of the
    budget within ``long_s`` (SRE Workbook, ch. 5)."""

    severity: Literal["page", "ticket"]
    name: str  # "quick" or "slow" in Sloth's terms
    budget_percent: float = Field(gt=0, le=100)
    long_s: int = Field(gt=0)
    short_s: int = Field(gt=0)
    burn_rate: float = Field(gt=0)


class AlertSeveritySpec(_Frozen):
    """Extra labels and annotations for the page or ticket alert, or ``disabled``."""

    disabled: bool = False
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class AlertingSpec(_Frozen):
    """The alert an SLO's burn-rate rules raise (name, labels, annotations per severity)."""

    name: str
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    page: AlertSeveritySpec = Field(default_factory=AlertSeveritySpec)
    ticket: AlertSeveritySpec = Field(default_factory=AlertSeveritySpec)


class SLO(_Frozen):
    """One service level objective.

    ``objective`` is the good percent the SLO promises (99.9); the error budget is
    ``(100 - objective) / 100`` of the events (or slices) in the window. ``alert_windows`` are the
    multi-window burn-rate alerts; ``None`` means the SRE Workbook defaults scaled to the period
    (:func:`relia.slo.burnrate.default_alert_windows`). ``min_events`` is the low-traffic guard:
    no burn-rate alert fires while the long window holds fewer events than this.
    """

    service: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = ""
    objective: float = Field(gt=0, lt=100)
    sli: SLI
    window: TimeWindow = Field(default_factory=TimeWindow)
    budgeting: BudgetingMethod = BudgetingMethod.OCCURRENCES
    timeslice_window_s: int | None = Field(None, gt=0)
    timeslice_target: float | None = Field(None, gt=0, le=1)
    labels: dict[str, str] = Field(default_factory=dict)
    alerting: AlertingSpec | None = None
    alert_windows: tuple[AlertWindow, ...] | None = None
    min_events: int | None = Field(None, ge=0)
    source: SpecSource = Field(default_factory=SpecSource)

    @property
    def id(self) -> str:
        """``service-name``, the id Sloth uses too (``sloth_id``)."""
        return f"{self.service}-{self.name}"

    @property
    def target(self) -> float:
        """The objective as a ratio (99.9 → 0.999...)."""
        return self.objective / 100.0

    @property
    def error_budget(self) -> float:
        """The allowed bad ratio, ``(100 - objective) / 100``: computed from the percent the way
        Sloth does, so rules carry the same float (0.0009999999999999432 for 99.9)."""
        return (100.0 - self.objective) / 100.0

    @model_validator(mode="after")
    def _budgeting_fields(self) -> SLO:
        sliced = self.budgeting is not BudgetingMethod.OCCURRENCES
        if sliced and self.timeslice_window_s is None:
            raise ValueError(f"budgeting {self.budgeting.value} needs timeslice_window")
        if self.budgeting is BudgetingMethod.TIMESLICES and self.timeslice_target is None:
            if not isinstance(self.sli, ThresholdSLI):
                raise ValueError("budgeting timeslices needs timeslice_target")
        if isinstance(self.sli, ThresholdSLI) and not sliced:
            raise ValueError("a threshold SLI needs a timeslices budgeting method")
        if self.timeslice_window_s is not None and self.window.period_s % self.timeslice_window_s:
            raise ValueError("timeslice_window must divide the SLO period")
        return self
