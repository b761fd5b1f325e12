"""Helpers for the SLO rule tests: find the shared Sloth examples, read them into SLOs, run
promtool and read the alerts out of its failure reports."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from relia.slo.spec import SLO

SHARED = Path(__file__).resolve().parents[3] / "shared/data/slo"
SLOTH = SHARED / "sloth"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def sloth_specs() -> list[Path]:
    """The Sloth example specs (not the ``*.gen.yml`` rules Sloth generated from them)."""
    return sorted(p for p in SLOTH.glob("*.yml") if not p.name.endswith(".gen.yml"))


def have_promtool() -> bool:
    return Path(PROMTOOL).is_file()


def sloth_slos(paths: list[Path]) -> list[SLO]:
    """The SLOs of Sloth example specs, read by relia's loader."""
    from relia.slo.loader import load_slos

    return list(load_slos(paths))


# --- promtool ------------------------------------------------------------------------------------


def promtool(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run promtool; the completed process (stdout and stderr as text) whatever its exit code."""
    return subprocess.run(
        [PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False
    )


_FAILURE_RE = re.compile(r"alertname: (?P<name>[^,]+), time: (?P<time>[^,]+),")
_SET = r'\{((?:[^"}]|"(?:[^"\\]|\\.)*")*)\}'
_ALERT_RE = re.compile(rf"Labels:{_SET}\s*Annotations:{_SET}")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def _go_unquote(text: str) -> str:
    # Go's %q escapes of the characters the examples can hold.
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), text)


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, _go_unquote(v)) for k, v in _LABEL_RE.findall(text)))


def _parse_duration_ms(text: str) -> int:
    """promtool's model.Duration text (``1d40m``, ``33h35m0s``, ``0s``) in milliseconds."""
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
    total, pos = 0, 0
    for m in re.finditer(r"(\d+)(ms|s|m|h|d|w|y)", text):
        assert m.start() == pos, text
        total += int(m.group(1)) * units[m.group(2)]
        pos = m.end()
    assert pos == len(text), text
    return total


@dataclass(frozen=True, order=True)
class Alert:
    """One firing alert as promtool shows it."""

    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, str], ...] = field(default=())


def parse_got_alerts(output: str) -> dict[tuple[str, int], frozenset[Alert]]:
    """From promtool's failure report for alert tests with empty expectations: the alerts it got,
    by (alertname, eval time in ms). Times with no alert are absent (those tests passed)."""
    got: dict[tuple[str, int], frozenset[Alert]] = {}
    blocks = _FAILURE_RE.split(output)
    # split() yields [prefix, name, time, body, name, time, body, ...]
    for i in range(1, len(blocks) - 2, 3):
        name, time_text, body = blocks[i], blocks[i + 1].strip(), blocks[i + 2]
        alerts = []
        for m in _ALERT_RE.finditer(body):
            alerts.append(Alert(_pairs(m.group(1)), _pairs(m.group(2))))
        got[(name, _parse_duration_ms(time_text))] = frozenset(alerts)
    return got
