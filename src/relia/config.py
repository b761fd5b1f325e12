"""``relia.yaml``: the configuration as pydantic models, with file/line locations on every error.

Precedence: defaults < file < ``RELIA_*`` environment variables. A nested field is reached with
double underscores: ``RELIA_API__PORT=9000`` sets ``api.port``. Values from the environment are
parsed as YAML scalars, so ``RELIA_HOST__ENABLED=false`` is a boolean.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from relia.errors import ConfigError

__all__ = [
    "ApiConfig",
    "DetectorSpec",
    "HostConfig",
    "LogFileConfig",
    "LogsConfig",
    "PrometheusQuery",
    "PrometheusSource",
    "ReliaConfig",
    "ScrapeTarget",
    "SloConfig",
    "load_config",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration(value: object) -> float:
    """Parse ``"15s"``, ``"5m"``, ``"1h"``, ``"250ms"`` or a number of seconds; return seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 15s, 5m or 1h")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"expected a duration like 15s, 5m or 1h, got {value!r}")
        seconds = float(match.group(1)) * _UNIT_MS[match.group(2) or "s"] / 1000.0
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _http_url(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return url


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ApiConfig(_Model):
    """The HTTP API and dashboard."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    token: str | None = Field(None, description="bearer token required on /api/ when set")


class HostConfig(_Model):
    """Metrics of this machine through psutil (the zero-config source)."""

    enabled: bool = True
    per_cpu: bool = False


class ScrapeTarget(_Model):
    """A ``/metrics`` endpoint in Prometheus or OpenMetrics text format."""

    name: str
    url: HttpUrl
    timeout: Duration = 5.0


class PrometheusQuery(_Model):
    query: str = Field(min_length=1)
    step: Duration = 15.0


class PrometheusSource(_Model):
    """A Prometheus server read through its HTTP API (``query_range``)."""

    name: str
    url: HttpUrl
    queries: list[PrometheusQuery] = Field(min_length=1)
    lookback: Duration = Field(300.0, description="how far back the first poll reaches")
    timeout: Duration = 10.0

    @field_validator("url")
    @classmethod
    def _no_trailing_slash(cls, url: str) -> str:
        return url.rstrip("/")


class DetectorSpec(_Model):
    """Which detector runs on every series, with its parameters, and when a score is an anomaly."""

    name: str = "default"
    params: dict[str, Any] = Field(default_factory=dict)
    threshold: float = Field(0.5, gt=0.0, le=1.0)


class SloConfig(_Model):
    """SLOs that ``relia up`` evaluates every ``interval``, turning firing burn-rate alerts into
    findings. Off while ``files`` is empty."""

    files: list[Path] = Field(
        default_factory=list, description="SLO spec files: relia, Sloth prometheus/v1, OpenSLO"
    )
    prometheus: HttpUrl | None = Field(
        None, description="Prometheus to evaluate against; default: the first prometheus source"
    )
    interval: Duration = Field(60.0, description="how often the SLOs are evaluated")
    step: Duration | None = Field(
        None, description="query resolution; default 5m (timeslice methods: the slice)"
    )
    timeout: Duration = 30.0
    sloth_windows: Path | None = Field(
        None, description="Sloth AlertWindows file: period and alert windows of the Sloth specs"
    )

    @field_validator("prometheus")
    @classmethod
    def _no_trailing_slash(cls, url: str | None) -> str | None:
        return url.rstrip("/") if url is not None else None

    @field_validator("step")
    @classmethod
    def _whole_seconds(cls, step: float | None) -> float | None:
        if step is not None and step != int(step):
            raise ValueError("the step must be a whole number of seconds")
        return step


class LogFileConfig(_Model):
    """A log file that ``relia up`` tails (followed across rotation and truncation)."""

    path: Path
    name: str | None = Field(
        None, min_length=1, description="label of its series and findings; default: file stem"
    )
    session_key: str | None = Field(
        None,
        description="regular expression finding a line's session (block, request, job id): the "
        "named group 'session', else group 1, else the whole match",
    )

    @field_validator("session_key")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern

    @property
    def label(self) -> str:
        """The file's name in series labels, findings and the store."""
        return self.name if self.name is not None else self.path.stem or self.path.name


class LogsConfig(_Model):
    """Log files tailed by ``relia up``: templates mined per file, new templates and template
    rates (per ``window``) become findings. Off while ``files`` is empty."""

    files: list[LogFileConfig] = Field(default_factory=list)
    window: Duration = Field(60.0, description="lines are counted per template per window")
    warmup_lines: int = Field(
        1000, ge=0, description="lines of a file read before a new template is a finding"
    )
    max_line_bytes: int = Field(1 << 20, ge=1, description="longer lines are skipped, counted")
    max_bytes_per_tick: int = Field(
        16 << 20, ge=1, description="bytes read per file per tick at most (a backlog waits)"
    )
    start_at: Literal["beginning", "end"] = Field(
        "beginning", description="where a file never read before starts: its first line or its end"
    )

    @field_validator("window")
    @classmethod
    def _whole_ms(cls, window: float) -> float:
        if window < 0.001:
            raise ValueError("the window must be at least 1ms")
        return window

    @field_validator("files")
    @classmethod
    def _unique_labels(cls, files: list[LogFileConfig]) -> list[LogFileConfig]:
        seen: dict[str, int] = {}
        for i, f in enumerate(files):
            if f.label in seen:
                raise ValueError(
                    f"files[{i}] and files[{seen[f.label]}] are both named {f.label!r}: "
                    "give one a name"
                )
            seen[f.label] = i
        return files


class ReliaConfig(_Model):
    """The whole of ``relia.yaml``."""

    data_dir: Path = Path("relia-data")
    interval: Duration = 15.0
    samples_per_series: int = Field(
        2000, ge=10, description="recent samples kept per series in the store"
    )
    host: HostConfig = Field(default_factory=HostConfig)
    scrape: list[ScrapeTarget] = Field(default_factory=list)
    prometheus: list[PrometheusSource] = Field(default_factory=list)
    detector: DetectorSpec = Field(default_factory=DetectorSpec)
    api: ApiConfig = Field(default_factory=ApiConfig)
    slos: SloConfig = Field(default_factory=SloConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)

    @field_validator("slos")
    @classmethod
    def _slos_have_a_prometheus(cls, slos: SloConfig, info: ValidationInfo) -> SloConfig:
        # Fields are validated in order: ``prometheus`` (the sources) is known here, unless it
        # failed validation itself (then that error is reported instead).
        sources = info.data.get("prometheus")
        if slos.files and slos.prometheus is None and sources == []:
            raise ValueError(
                "no Prometheus to evaluate the SLOs against: set slos.prometheus or add a "
                "prometheus source"
            )
        return slos


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """Follow a pydantic error location through the YAML node tree; return a 1-based line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    nxt = value_node
                    line = key_node.start_mark.line + 1
                    break
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                node = None
        else:
            break
        if node is None:
            break
    return line


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("RELIA_") or name in ("RELIA_CONFIG",):
            continue
        path = [p.lower() for p in name[len("RELIA_") :].split("__") if p]
        if not path:
            continue
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                break
        else:
            target[path[-1]] = value
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_error(err: Mapping[str, Any], where: str, root: yaml.Node | None) -> str:
    loc = tuple(err.get("loc", ()))
    field = ".".join(str(p) for p in loc) or "(top level)"
    line = _line_of(root, loc) if root is not None else None
    place = f"{where}:{line}" if line else where
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    return f"{place}: {field}: {msg}"


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> ReliaConfig:
    """Load and validate ``relia.yaml`` (or defaults when ``path`` is None).

    Raises :class:`ConfigError` listing every problem, each as ``file:line: field: message``.
    """
    environ = os.environ if environ is None else environ
    data: dict[str, Any] = {}
    root: yaml.Node | None = None
    where = "<defaults>"
    if path is not None:
        p = Path(path)
        where = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError("no such file", where=where) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read: {exc}", where=where) from None
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"{where}{line}: not valid YAML: {problem}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("expected a mapping of settings at the top level", where=f"{where}:1")
        data = loaded
    env = _env_overrides(environ)
    try:
        return ReliaConfig.model_validate(_merge(data, env))
    except ValidationError as exc:
        lines = [_format_error(e, where, root) for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
