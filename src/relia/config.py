"""``relia.yaml``: the configuration as pydantic models, with file/line locations on every error.

Precedence: defaults < file < ``RELIA_*`` environment variables. A nested field is reached with
double underscores: ``RELIA_API__PORT=9000`` sets ``api.port``. A value from the environment that
is exactly a YAML number, boolean or null, or starts with ``[`` or ``{``, is read as YAML, so
``RELIA_HOST__ENABLED=false`` is a boolean; anything else, and any value of a text setting, is the
text as written.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from relia._fieldnames import unknown_field
from relia._rayaddress import ray_address_problem
from relia._urls import http_url_problem, looks_like_conninfo, shown_url
from relia._yamlkeys import repeated_keys
from relia.errors import ConfigError

__all__ = [
    "ApiConfig",
    "ApiToken",
    "DetectorSpec",
    "EngineConfig",
    "HaConfig",
    "HostConfig",
    "IncidentsConfig",
    "IngestConfig",
    "LogFileConfig",
    "LogsConfig",
    "NotifyConfig",
    "PrometheusQuery",
    "PrometheusSource",
    "ReliaConfig",
    "ScrapeTarget",
    "SinkConfig",
    "SloConfig",
    "duplicate_source_names",
    "human_duration",
    "is_loopback",
    "load_config",
    "parse_delay",
    "parse_duration",
]

# ASCII digits only: ``\d`` would take other scripts' digits ("١٥s" read as 15 s).
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h|d|w|y)\s*")
_BARE_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_UNIT_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}
#: The longest wait Python's threads take (``threading.TIMEOUT_MAX`` on Linux: 292 years).
_MAX_SECONDS = 9_223_372_036.0
_TOO_LONG = f"a duration must not be longer than {_MAX_SECONDS:g} s (292 years)"
_EXPECTED = "expected a duration like 15s, 5m, 1h or 1h30m"


def _duration_text_seconds(text: str) -> float | None:
    """Seconds in ``text`` written as a number of seconds or as parts with units (``1h30m``,
    ``250ms``, ``1.5h``: Prometheus's grammar, with fractions); None when it is neither."""
    text = text.strip()
    if _BARE_SECONDS.fullmatch(text):
        return float(text)
    pos, total_ms = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total_ms += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    return total_ms / 1000.0 if text and pos == len(text) else None


def parse_duration(value: object) -> float:
    """Parse ``"15s"``, ``"5m"``, ``"1h30m"``, ``"250ms"`` or a number of seconds into seconds."""
    if isinstance(value, bool):
        raise ValueError(_EXPECTED)
    if isinstance(value, int | float):
        try:
            seconds = float(value)
        except OverflowError:  # a whole number too large for a float
            raise ValueError(_TOO_LONG if value > 0 else "a duration must be positive") from None
    else:
        text = str(value).strip()
        if text.startswith("-") and _duration_text_seconds(text[1:]) is not None:
            raise ValueError(f"a duration must not be negative, got {value!r}")
        parsed = _duration_text_seconds(text)
        if parsed is None:
            raise ValueError(f"{_EXPECTED}, got {value!r}")
        seconds = parsed
    if not math.isfinite(seconds):
        raise ValueError("a duration must be finite")
    if seconds < 0:
        raise ValueError(f"a duration must not be negative, got {value!r}")
    if seconds == 0:
        raise ValueError("a duration must be positive")
    if seconds < 0.001:
        # Time is kept in whole milliseconds: a shorter interval or step cannot be kept.
        raise ValueError("a duration must be at least 1ms")
    if seconds > _MAX_SECONDS:
        # relia waits for durations (the tick interval, timeouts): the clock cannot go further.
        raise ValueError(_TOO_LONG)
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]


def parse_delay(value: object) -> float:
    """A :data:`Duration` that may also be 0 (``0``, ``"0s"``): a wait that can be none."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value == 0:
        return 0.0
    if isinstance(value, str):
        if _duration_text_seconds(value) == 0:
            return 0.0
        if value.strip().startswith("-"):
            raise ValueError(f"must not be negative, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return parse_duration(value)


#: A duration or 0.
NonNegativeDuration = Annotated[float, BeforeValidator(parse_delay)]

#: How long finished history is kept by default (``retention``), and the least allowed.
RETENTION_DEFAULT = 30 * 86400.0
RETENTION_MIN = 86400.0
#: How long a series may send nothing before it is forgotten (``forget_after``), and the least.
FORGET_AFTER_DEFAULT = 7 * 86400.0
FORGET_AFTER_MIN = 3600.0


def human_duration(seconds: float) -> str:
    """``seconds`` in the largest unit that writes it whole (``30d``, ``36h``, ``90s``), as
    relia.yaml writes durations: for messages and logs."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _http_url(url: str) -> str:
    problem = http_url_problem(url)
    if problem is not None:
        raise ValueError(problem)
    return url


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def _setting_path(value: object) -> object:
    """A path setting as relia uses it: ``~`` expanded (a literal ``./~`` folder is a trap: ``rm
    -rf ~`` to clean it up deletes the home directory), a NUL refused (no system call takes it)."""
    if not isinstance(value, str | os.PathLike):
        return value  # not a path: pydantic says so ("expected a path")
    text = os.fspath(value)
    if not isinstance(text, str):
        return value
    if "\0" in text:
        raise ValueError("holds a NUL character")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # ~user for a user this machine does not know
        raise ValueError(f"cannot expand {text.split('/', 1)[0]!r}: no such user") from None


#: A file or directory setting: ``~`` expanded, a NUL refused.
SettingPath = Annotated[Path, BeforeValidator(_setting_path)]


# "${NAME}", "${NAME:-default}" or "$NAME": a shell or compose variable left unexpanded.
_VARIABLE = re.compile(r"\$(\{[A-Za-z_][A-Za-z0-9_]*([:?+-][^}]*)?\}|[A-Za-z_][A-Za-z0-9_]*)")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_true_or_false_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic takes YAML's true/false as 1 and 0 for a number: `port: false` would serve
        # on a random port. A setting that is a number (and not also a switch) refuses them;
        # one with a parser of its own (a duration) says what it expects itself.
        if isinstance(value, bool) and info.field_name is not None:
            field = cls.model_fields[info.field_name]
            kinds = {field.annotation, *get_args(field.annotation)}
            parsed = any(isinstance(m, BeforeValidator) for m in field.metadata)
            if bool not in kinds and kinds & {int, float} and not parsed:
                raise ValueError(f"expected a number, got {str(value).lower()}")
        return value


_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")


class ApiToken(_Model):
    """An API token as the config keeps it: its SHA-256, never the token (``relia token create``
    prints both once)."""

    # Validation errors never echo what was given (it may be the token, pasted by mistake).
    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)

    name: str = Field(min_length=1, max_length=100, description="what logs and errors call it")
    role: Literal["read", "ingest", "admin"]
    sha256: SecretStr = Field(description="hex SHA-256 of the token")

    @field_validator("sha256")
    @classmethod
    def _hex_digest(cls, value: SecretStr) -> SecretStr:
        # Messages never repeat the value: it may be the token itself, pasted by mistake.
        text = value.get_secret_value().strip()
        if text.startswith("relia_"):
            raise ValueError(
                "this is a token, not its hash: put the sha256 that `relia token create` printed "
                "here, and create a new token (this one is now in a file)"
            )
        if not _SHA256_HEX.match(text):
            raise ValueError("expected 64 hex digits (the sha256 `relia token create` prints)")
        return SecretStr(text.lower())


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the API on this machine (127.0.0.0/8, ::1, localhost)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:  # another host name: it may resolve to anything
        return False


def _readable_file(path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror}") from None


class ApiConfig(_Model):
    """The HTTP API and dashboard."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, hide_input_in_errors=True)

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    token: SecretStr | None = Field(
        None,
        description="deprecated: one plain admin token (e.g. from RELIA_API__TOKEN); "
        "prefer hashed tokens",
    )
    tokens: list[ApiToken] = Field(
        default_factory=list, description="accepted tokens: name, role and SHA-256 of each"
    )
    auth: bool | None = Field(
        None,
        validate_default=True,
        description="require a token on every route but /healthz; default: on when tokens are "
        "configured. Off is allowed only on a loopback address",
    )
    tls_cert: SettingPath | None = Field(None, description="PEM certificate (chain): serve HTTPS")
    tls_key: SettingPath | None = Field(
        None, validate_default=True, description="PEM private key of tls_cert"
    )
    max_body_bytes: int = Field(16 << 20, ge=1, description="larger request bodies get 413")
    max_header_bytes: int = Field(
        64 << 10, ge=1024, description="larger request lines and headers get 431 (or 400)"
    )
    header_timeout: Duration = Field(
        30.0,
        gt=0,
        description="a connection whose request line and headers are not complete this long "
        "after it opened (or after its previous response) is closed",
    )
    body_timeout: Duration = Field(
        60.0,
        gt=0,
        description="the longest wait for the next part of a request body; past it, 408 and "
        "the connection is closed",
    )
    max_connections: int = Field(
        1000,
        ge=1,
        description="the most open connections requests are answered on (idle kept-alive ones "
        "count): a request on one more gets 503 and its connection is closed",
    )

    @field_validator("token")
    @classmethod
    def _token_not_blank(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and not token.get_secret_value().strip():
            # An unset ${TOKEN} in a compose file: auth would be on with a token nobody sends.
            raise ValueError("is empty (an unset variable?): set a token or leave it out")
        if token is not None and _VARIABLE.fullmatch(token.get_secret_value().strip()):
            # relia.yaml is not expanded: the token would be this text, which anyone reading
            # the file (or the example it came from) could send.
            raise ValueError(
                "looks like a variable, and relia.yaml does not expand variables: set "
                "RELIA_API__TOKEN in the environment instead, or use api.tokens"
            )
        return token

    @field_validator("tokens")
    @classmethod
    def _unique_tokens(cls, tokens: list[ApiToken]) -> list[ApiToken]:
        names: dict[str, int] = {}
        digests: dict[str, int] = {}
        for i, t in enumerate(tokens):
            if t.name in names:
                raise ValueError(
                    f"tokens[{i}] and tokens[{names[t.name]}] are both named {t.name!r}"
                )
            digest = t.sha256.get_secret_value()
            if digest in digests:
                raise ValueError(
                    f"tokens[{i}] ({t.name!r}) has the same sha256 as tokens[{digests[digest]}]"
                )
            names[t.name] = i
            digests[digest] = i
        return tokens

    @field_validator("auth")
    @classmethod
    def _auth_off_only_on_loopback(cls, auth: bool | None, info: ValidationInfo) -> bool | None:
        data = info.data
        if "tokens" not in data or "host" not in data:
            return auth  # those failed validation themselves: that error is reported instead
        has_tokens = bool(data["tokens"]) or data.get("token") is not None
        on = has_tokens if auth is None else auth
        if on and not has_tokens:
            raise ValueError(
                "auth is on but no token is configured: add one under api.tokens "
                "(`relia token create --name NAME --role admin`)"
            )
        if not on and data.get("enabled", True) and not is_loopback(data["host"]):
            raise ValueError(
                f"auth is off but api.host {data['host']!r} is not a loopback address: add "
                "api.tokens (`relia token create`) or bind to 127.0.0.1"
            )
        return auth

    @field_validator("tls_cert")
    @classmethod
    def _a_certificate(cls, cert: Path | None) -> Path | None:
        import ssl

        if cert is not None:
            _readable_file(cert)
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
            except ssl.SSLError as exc:
                raise ValueError(f"{str(cert)!r} is not a PEM certificate ({exc.reason})") from None
        return cert

    @field_validator("tls_key")
    @classmethod
    def _matching_key(cls, key: Path | None, info: ValidationInfo) -> Path | None:
        import ssl

        if "tls_cert" not in info.data:
            return key  # the certificate failed: that error is reported instead
        cert: Path | None = info.data["tls_cert"]
        if (cert is None) != (key is None):
            raise ValueError("set both api.tls_cert and api.tls_key, or neither")
        if cert is not None and key is not None:
            _readable_file(key)
            # The ssl module is the judge of what uvicorn will accept. Without a password
            # callback, OpenSSL asks for a passphrase on the terminal (a hang), or fails with
            # a bare OSError where there is none.
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(
                    cert, key, password=_no_passphrase
                )
            except _EncryptedKeyError:
                raise ValueError(
                    f"{str(key)!r} is encrypted (has a passphrase): relia needs an unencrypted "
                    "PEM key"
                ) from None
            except ssl.SSLError as exc:
                # ssl gives no reason for some files (a certificate as the key): no "(None)".
                why = f" ({exc.reason})" if exc.reason else ""
                raise ValueError(
                    f"{str(key)!r} is not the PEM private key of api.tls_cert{why}"
                ) from None
        return key

    @property
    def auth_enabled(self) -> bool:
        """Whether requests need a token (``auth``, or by default: any token configured)."""
        has_tokens = bool(self.tokens) or self.token is not None
        return has_tokens if self.auth is None else self.auth

    @property
    def tls(self) -> bool:
        """Whether the API serves HTTPS."""
        return self.tls_cert is not None


class _EncryptedKeyError(Exception):
    """The private key asked for a passphrase."""


def _no_passphrase() -> bytes:
    """The password callback of a key check: an encrypted key is refused, never prompted for."""
    raise _EncryptedKeyError


class HostConfig(_Model):
    """Metrics of this machine through psutil (the zero-config source)."""

    enabled: bool = True
    per_cpu: bool = False


class ScrapeTarget(_Model):
    """A ``/metrics`` endpoint in Prometheus or OpenMetrics text format."""

    name: str
    url: HttpUrl
    timeout: Duration = 5.0
    interval: Duration | None = Field(
        None, description="how often to scrape it; every engine tick when unset"
    )
    max_body_bytes: int = Field(
        64 << 20, ge=1, description="a larger page (decoded) is a failed scrape, up = 0"
    )


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
    # About one scrape interval plus a scrape timeout (15s + 10s, and a margin): Prometheus
    # stores a sample when its scrape ends, stamped when it began.
    delay: NonNegativeDuration = Field(
        30.0,
        description="the newest time queried is this long ago, so Prometheus has stored its "
        "samples (0: up to now)",
    )

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

    files: list[SettingPath] = Field(
        default_factory=list, description="SLO spec files: relia, Sloth prometheus/v1, OpenSLO"
    )
    prometheus: HttpUrl | None = Field(
        None, description="Prometheus to evaluate against; default: the first prometheus source"
    )
    interval: Duration = Field(60.0, description="how often the SLOs are evaluated")
    step: Duration | None = Field(
        None, description="query resolution; default 5m (timeslice methods: the slice)"
    )
    min_range: Duration = Field(
        300.0,
        description="shortest range put in for {{.window}} (about twice the scrape interval)",
    )
    timeout: Duration = 30.0
    sloth_windows: SettingPath | None = Field(
        None, description="Sloth AlertWindows file: period and alert windows of the Sloth specs"
    )

    @field_validator("prometheus")
    @classmethod
    def _no_trailing_slash(cls, url: str | None) -> str | None:
        return url.rstrip("/") if url is not None else None

    @field_validator("step", "min_range")
    @classmethod
    def _whole_seconds(cls, value: float | None, info: ValidationInfo) -> float | None:
        if value is not None and value != int(value):
            raise ValueError(f"the {info.field_name} must be a whole number of seconds")
        return value


class LogFileConfig(_Model):
    """A log file that ``relia up`` tails (followed across rotation and truncation)."""

    path: SettingPath
    name: str | None = Field(
        None, min_length=1, description="label of its series and findings; default: file stem"
    )
    session_key: str | None = Field(
        None,
        description="regular expression finding a line's session (block, request, job id): the "
        "named group 'session', else group 1, else the whole match",
    )

    @field_validator("path")
    @classmethod
    def _not_a_directory(cls, path: Path) -> Path:
        # A file that is not there yet is waited for; a directory would fail only at `relia up`.
        if path.is_dir():
            raise ValueError(f"{str(path)!r} is a directory; name a log file")
        # Taken as a name, a pattern would be waited for forever as a file that never appears.
        if any(c in str(path) for c in "*?["):
            raise ValueError(
                f"{str(path)!r} is a glob pattern, which is not supported: list each log file "
                "as an entry of its own"
            )
        return path

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
    window: Duration = Field(
        60.0,
        description="lines are counted per template per window; a multiple of interval (lines "
        "go to the window of the tick that read them)",
    )
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


class IncidentsConfig(_Model):
    """How findings are grouped into incidents (``relia.incidents.correlate``)."""

    group_by: list[str] = Field(
        default_factory=lambda: ["service", "job", "instance", "namespace", "pod"],
        min_length=1,
        description="identifying labels: findings sharing the value of one of them group "
        "(findings on one service, by their service or job label, group in any case)",
    )
    group_window: Duration = Field(
        300.0, description="a finding joins an incident it overlaps in time within this"
    )
    resolve_after: Duration = Field(
        300.0, description="an incident resolves when all its findings ended this long ago"
    )
    reopen_window: Duration = Field(
        1800.0, description="a key going wrong again this soon after resolving reopens it"
    )
    flap_window: Duration = Field(
        3600.0,
        description="window in which a key's episodes are counted (an episode: the key going "
        "wrong again after more than resolve_after of quiet, whether or not that opened an "
        "incident)",
    )
    flap_max: int = Field(
        3,
        ge=1,
        description="a key with this many episodes within flap_window is flapping: its findings "
        "join its last incident instead of opening new ones, which stays open until it calms down",
    )
    topology: dict[str, list[str]] = Field(
        default_factory=dict,
        description="service -> services it depends on; findings on an edge's ends group",
    )

    @field_validator("group_by")
    @classmethod
    def _names(cls, group_by: list[str]) -> list[str]:
        for i, name in enumerate(group_by):
            if not name.strip():
                raise ValueError(f"group_by[{i}] is empty: give a label name")
        return group_by

    @field_validator("topology")
    @classmethod
    def _edges(cls, topology: dict[str, list[str]]) -> dict[str, list[str]]:
        for service, deps in topology.items():
            if not service.strip():
                raise ValueError("a service name is empty")
            if service in deps:
                raise ValueError(f"{service!r} depends on itself")
        return topology


_SINK_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
#: API paths of Alertmanager's alerts endpoint, refused at the end of a sink's base URL.
_ALERTMANAGER_ENDPOINTS = ("/api/v2/alerts", "/api/v1/alerts")


class SinkConfig(_Model):
    """One place notifications go: ``alertmanager`` (API v2), ``webhook`` (signed JSON) or ``log``.

    The webhook's HMAC secret is never written in the YAML: ``secret_env`` names the environment
    variable that holds it.
    """

    name: str = Field(description="unique; part of every dedup key (letters, digits, _ . -)")
    type: Literal["alertmanager", "webhook", "log"]
    url: HttpUrl | None = Field(
        None, validate_default=True, description="Alertmanager base URL or webhook URL"
    )
    secret_env: str | None = Field(
        None, validate_default=True, description="environment variable holding the HMAC secret"
    )
    timeout: Duration = 5.0
    resend_interval: Duration = Field(
        60.0, description="Alertmanager: how often open incidents' alerts are re-sent"
    )
    min_severity: Literal["info", "warning", "critical"] = Field(
        "info",
        description="the least severity that starts notifying this sink about an incident; "
        "once notified, it hears every later change of that incident (down to its resolution)",
    )

    @field_validator("name")
    @classmethod
    def _name_ok(cls, name: str) -> str:
        # ':' separates the parts of a dedup key, so it cannot be in a sink's name.
        if not _SINK_NAME.match(name):
            raise ValueError("use letters, digits, '_', '.' or '-' only")
        return name

    @field_validator("url")
    @classmethod
    def _url_needed(cls, url: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("type")
        if url is None and kind in ("alertmanager", "webhook"):
            raise ValueError(f"a url is required for type {kind}")
        if url is None or kind != "alertmanager":
            return url
        base = str(url).rstrip("/")
        # relia appends /api/v2/alerts itself: the full endpoint, copied from Alertmanager's
        # docs, would be posted to .../api/v2/alerts/api/v2/alerts and every alert rejected.
        path = base.split("?", 1)[0]
        for endpoint in _ALERTMANAGER_ENDPOINTS:
            if path.endswith(endpoint):
                raise ValueError(
                    f"the base URL of Alertmanager, without {endpoint} (relia appends "
                    f"/api/v2/alerts): {shown_url(path[: -len(endpoint)])}?"
                )
        return base

    @field_validator("secret_env")
    @classmethod
    def _secret_set(cls, name: str | None, info: ValidationInfo) -> str | None:
        if info.data.get("type") != "webhook":
            return name
        if not name:
            raise ValueError("a webhook sink needs secret_env: the variable holding its secret")
        if not (info.context or {}).get("secrets", True):
            return name  # a reader (relia incidents) sends nothing: it needs no signing secret
        environ = (info.context or {}).get("environ", os.environ)
        if not environ.get(name):
            raise ValueError(f"the environment variable {name} is not set (or empty)")
        return name


class NotifyConfig(_Model):
    """Delivery of incident notifications: the sinks, retry backoff, circuit breaker, give-up age.

    Every notification is written to the store's outbox first, then delivered to each sink.
    """

    sinks: list[SinkConfig] = Field(default_factory=list)
    external_url: HttpUrl | None = Field(
        None, description="where people reach relia's API, for links in notifications"
    )
    base_delay: Duration = Field(1.0, description="first retry delay (doubles per attempt)")
    max_delay: Duration = Field(300.0, description="longest retry delay")
    breaker_threshold: int = Field(5, ge=1, description="consecutive failures that open it")
    breaker_cooldown: Duration = Field(30.0, description="open this long before a probe")
    max_age: Duration = Field(86400.0, description="undelivered this long: given up (failed)")

    @field_validator("sinks")
    @classmethod
    def _unique_names(cls, sinks: list[SinkConfig]) -> list[SinkConfig]:
        seen: dict[str, int] = {}
        for i, s in enumerate(sinks):
            if s.name in seen:
                raise ValueError(f"sinks[{i}] and sinks[{seen[s.name]}] are both named {s.name!r}")
            seen[s.name] = i
        return sinks

    @field_validator("external_url")
    @classmethod
    def _no_trailing_slash(cls, url: str | None) -> str | None:
        return url.rstrip("/") if url is not None else None


class IngestConfig(_Model):
    """Prometheus remote-write into ``relia up`` (``POST /api/v1/write``): a bounded queue in
    memory behind a write-ahead log, drained by the engine as soon as data arrives."""

    remote_write: bool = Field(True, description="serve POST /api/v1/write (with the API)")
    max_queue_samples: int = Field(
        2_000_000,
        ge=1,
        description="samples waiting in memory at most; beyond, 503 with Retry-After",
    )
    max_samples_per_tick: int = Field(
        250_000, ge=1, description="samples one engine tick takes from the queue at most"
    )
    max_body_bytes: int = Field(16 << 20, ge=1, description="compressed request body limit")
    max_decoded_bytes: int = Field(64 << 20, ge=1, description="decompressed request body limit")
    max_future: Duration = Field(
        600.0,
        gt=0,
        description="a remote-write request holding a sample timestamped further ahead of "
        "relia's clock is refused (400, nothing of it stored), and such a scraped sample is "
        "dropped: the engine scores only samples newer than a series' last one, so one "
        "far-future sample would stop the scoring of its series",
    )
    wal_dir: SettingPath | None = Field(None, description="write-ahead log; default <data_dir>/wal")
    fsync_interval: Duration | None = Field(
        None,
        description="fsync the WAL at most this long after a write (power-loss safety); unset: "
        "the OS flushes (an acknowledged sample survives a crash of relia, not of the machine)",
    )
    fsync_every_write: bool = Field(
        False, description="fsync before every acknowledgement (slowest, no loss on power cut)"
    )


class EngineConfig(_Model):
    """Where the streaming detectors run: ``local`` (in this process) or ``ray`` (series sharded
    across Ray actors by a hash of their id; ``pip install 'relia[ray]'``)."""

    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = Field(
        None,
        description="Ray cluster to join (e.g. head:6379, ray://head:10001 or auto, which "
        "honours RAY_ADDRESS); unset: start a local Ray on this machine's CPUs (RAY_ADDRESS is "
        "not used)",
    )
    ray_actors: int | None = Field(
        None, ge=1, description="actors (shards) to spread the series over; default: cluster CPUs"
    )

    @field_validator("ray_address")
    @classmethod
    def _ray_address_can_work(cls, address: str | None) -> str | None:
        # Checked here too (not only when Ray starts), so that relia config check catches it.
        problem = None if address is None else ray_address_problem(address)
        if problem is not None:
            raise ValueError(problem)
        return address


class HaConfig(_Model):
    """High availability (``relia.ha``), on when the store is PostgreSQL: the replicas share a
    lease in the database; its holder correlates incidents and sends notifications."""

    lease_ttl: Duration = Field(
        10.0, description="a leader that stops renewing loses the lease this long after"
    )
    renew_interval: Duration = Field(
        3.0, description="how often the leader renews (and followers try to take the lease)"
    )
    replica_id: str | None = Field(
        None, min_length=1, max_length=200, description="this replica's name; default host:pid"
    )

    @field_validator("replica_id")
    @classmethod
    def _replica_id_is_printable(cls, replica_id: str | None) -> str | None:
        # It goes into the lease connection's application_name (libpq cannot take a NUL) and
        # into the lease row, /healthz and the log.
        if replica_id is not None:
            bad = re.search(r"[\x00-\x1f\x7f]", replica_id)
            if bad is not None:
                raise ValueError(f"holds the control character {bad.group()!r}")
        return replica_id

    @model_validator(mode="after")
    def _ttl_leaves_room(self) -> HaConfig:
        # The fence counts a lease as held only while it runs for renew_interval more seconds;
        # with a ttl of two intervals or less, a healthy leader would count itself out.
        if self.lease_ttl <= 2 * self.renew_interval:
            raise ValueError(
                f"lease_ttl ({self.lease_ttl:g}s) must be more than twice renew_interval "
                f"({self.renew_interval:g}s)"
            )
        return self


#: A password in a PostgreSQL URL, as libpq finds one: ``user:PASSWORD@`` before the first
#: ``/``, or a ``password=`` parameter (group 1 is what comes before it).
_PG_URL_PASSWORD = re.compile(r"(^[^/]*//[^/@:]*:)[^/]*(?=@)|([?&]password=)[^&]*", re.IGNORECASE)


def _check_postgresql_url(url: str) -> None:
    """Refuse a PostgreSQL URL libpq would refuse (``relia config check`` said ok to it, and
    ``relia up`` failed), or whose port no server can have. The URL is never echoed: it may
    hold a password."""
    try:
        from psycopg.conninfo import conninfo_to_dict
    except ImportError:  # without the postgres extra, relia up says it needs it
        return
    try:
        params = conninfo_to_dict(url)
    except Exception:  # noqa: BLE001 - psycopg.ProgrammingError, libpq's message
        # libpq quotes the part it could not parse, and that part can be the password: the
        # reason is asked again of the URL with its passwords masked.
        masked = _PG_URL_PASSWORD.sub(lambda m: f"{m[1] or m[2]}***", url)
        try:
            conninfo_to_dict(masked)
        except Exception as exc:  # noqa: BLE001 - as above
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            why = why.replace(f' in URI: "{masked}"', "").replace(masked, "the URL")
        else:
            why = "its password cannot be read (percent-encode its spaces and %)"
        raise ValueError(f"not a valid PostgreSQL URL: {why}") from None
    for port in str(params.get("port", "")).split(","):
        if port and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(f"not a valid PostgreSQL URL: port {port!r} is not 1 to 65535")


class ReliaConfig(_Model):
    """The whole of ``relia.yaml``."""

    data_dir: SettingPath = Path("relia-data")
    store: str | None = Field(
        None,
        description="unset or a directory: the embedded DuckDB store (in data_dir, or there); "
        "postgresql://user@host:port/db: the shared PostgreSQL store (libpq also reads the "
        "password from PGPASSWORD or ~/.pgpass, so it need not be written here)",
    )
    interval: Duration = 15.0
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        description="what relia up writes to stderr: info shows starts, deliveries to a log "
        "sink, retention and recoveries; warning only what needs a look",
    )
    samples_per_series: int = Field(
        2000,
        ge=10,
        le=10**9,  # the store's marks are int64: past ~2**63 every tick would overflow
        description="recent samples kept per series in the store "
        "(DuckDB: up to an eighth more between trims)",
    )
    max_series: int = Field(
        1_000_000,
        ge=1,
        description="series relia holds at most, from every source together (each costs about "
        "3 KB of memory plus its samples in the store, until forget_after); samples of a new "
        "series beyond it are dropped, counted in relia_series_refused_total and logged, and a "
        "remote-write request naming such series gets 400",
    )
    forget_after: Duration | None = Field(
        FORGET_AFTER_DEFAULT,
        description="a series nothing was received for this long is forgotten: its detector "
        "state leaves memory and it no longer counts against max_series (if it sends again it "
        "starts afresh, as a new series), and a few hours later its samples and checkpoint "
        "leave the store (its findings follow retention); null: never, every series is kept "
        f"for good; at least {human_duration(FORGET_AFTER_MIN)}",
    )
    host: HostConfig = Field(default_factory=HostConfig)
    scrape: list[ScrapeTarget] = Field(default_factory=list)
    prometheus: list[PrometheusSource] = Field(default_factory=list)
    detector: DetectorSpec = Field(default_factory=DetectorSpec)
    api: ApiConfig = Field(default_factory=ApiConfig)
    slos: SloConfig = Field(default_factory=SloConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    ha: HaConfig = Field(default_factory=HaConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    # After incidents and notify: its check reads them (fields are validated in order).
    retention: Duration = Field(
        RETENTION_DEFAULT,
        validate_default=True,  # a longer flap_window or max_age may need more than the default
        description="history kept: resolved incidents, the findings only they hold and "
        "delivered or failed notifications are deleted this long after they ended (open "
        "incidents and pending notifications are kept whatever their age); at least "
        f"{human_duration(RETENTION_MIN)}, and twice the longest of incidents.group_window, "
        "resolve_after, reopen_window, flap_window and notify.max_age",
    )

    @field_validator("forget_after")
    @classmethod
    def _forget_after_long_enough(cls, forget_after: float | None) -> float | None:
        if forget_after is not None and forget_after < FORGET_AFTER_MIN:
            raise ValueError(
                f"{human_duration(forget_after)} is too short, use at least "
                f"{human_duration(FORGET_AFTER_MIN)} (or null: never): a series that pauses "
                "for less would lose what its detector learned"
            )
        return forget_after

    @field_validator("retention")
    @classmethod
    def _retention_keeps_what_is_needed(cls, retention: float, info: ValidationInfo) -> float:
        # What the engine still reads back: resolved incidents that may reopen or hold a
        # flapping key, their findings, and (for a restart) a day of resolved incidents.
        floor = ("", RETENTION_MIN)
        needs: list[tuple[str, float]] = [floor]
        inc = info.data.get("incidents")
        if isinstance(inc, IncidentsConfig):
            needs += [
                (f"incidents.{name}", float(getattr(inc, name)))
                for name in ("group_window", "resolve_after", "reopen_window", "flap_window")
            ]
        notify = info.data.get("notify")
        if isinstance(notify, NotifyConfig):
            needs.append(("notify.max_age", notify.max_age))
        name, longest = max(needs[1:], key=lambda n: n[1], default=floor)
        least = max(RETENTION_MIN, 2 * longest)
        if retention < least:
            why = (
                f"twice {name}, {human_duration(longest)}"
                if 2 * longest >= RETENTION_MIN
                else "the shortest retention"
            )
            raise ValueError(
                f"{human_duration(retention)} is too short, keep at least "
                f"{human_duration(least)} ({why}): relia still reads back resolved incidents "
                "and their findings younger than that (to reopen them, spot flapping, restart)"
            )
        return retention

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, store: str | None) -> str | None:
        if store is None or not store.strip():
            return None
        scheme, sep, rest = store.strip().partition("://")
        if sep and scheme.lower() not in ("postgresql", "postgres"):
            # The value itself is not echoed: it may hold a password.
            raise ValueError(
                f"unsupported store {scheme!r}: use a directory (the embedded DuckDB store) "
                "or postgresql://user@host:port/dbname"
            )
        if sep:
            # libpq takes the scheme in lower case only (POSTGRESQL:// is "not a valid
            # connection string"), and HA is recognised by it: one spelling everywhere.
            url = f"{scheme.lower()}{sep}{rest}"
            _check_postgresql_url(url)
            return url
        if looks_like_conninfo(store):
            # Else it would be taken for a directory: a DuckDB store, each replica alone.
            raise ValueError(
                "a keyword/value connection string (host=… dbname=…) is not supported here: "
                "write the store as postgresql://user@host:port/dbname"
            )
        if "\0" in store:
            raise ValueError("holds a NUL character")
        # A directory: ~ expanded, as in every path setting.
        return str(Path(store.strip()).expanduser())

    @property
    def store_is_postgresql(self) -> bool:
        """Whether ``store`` names a PostgreSQL database (else the store is DuckDB)."""
        return self.store is not None and self.store.lower().startswith(
            ("postgresql://", "postgres://")
        )

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
    for depth, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    nxt = value_node
                    line = key_node.start_mark.line + 1
                    break
            if nxt is None and depth == 0:
                return None  # a section the file does not write: no line of it is the place
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


def _short_tag(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


def _unconstructible_node(root: yaml.Node | None) -> yaml.ScalarNode | None:
    """The first scalar of ``root`` that PyYAML cannot construct (a bad ``!!int abc``)."""
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop(0)
        if isinstance(node, yaml.ScalarNode):
            try:
                yaml.SafeLoader("").construct_object(node, deep=True)
            except (ValueError, TypeError, KeyError, AttributeError, yaml.YAMLError):
                return node
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                stack.extend((key, value))
    return None


def _secret_env_names(data: Mapping[str, Any]) -> set[str]:
    """The variables the file's webhook sinks name in ``secret_env``."""
    notify = data.get("notify")
    sinks = notify.get("sinks") if isinstance(notify, dict) else None
    if not isinstance(sinks, list):
        return set()
    names = (s.get("secret_env") for s in sinks if isinstance(s, dict))
    return {n for n in names if isinstance(n, str)}


def _env_overrides(
    environ: Mapping[str, str], secrets: Collection[str] = ()
) -> tuple[dict[str, Any], dict[tuple[str, ...], str]]:
    """The ``RELIA_SECTION__KEY`` settings as a nested mapping, and which variable set each path
    (so an error names the variable, not a line of the file). ``secrets`` are variables a sink
    reads its secret from (``secret_env``), not settings."""
    out: dict[str, Any] = {}
    sources: dict[tuple[str, ...], str] = {}
    for name, raw in environ.items():
        # RELIA_TOKEN is the API token clients send (relia incidents), not a setting; a sink's
        # secret_env (RELIA_HOOK_SECRET in the README) holds a secret, not a setting either.
        if not name.startswith("RELIA_") or name in ("RELIA_CONFIG", "RELIA_TOKEN"):
            continue
        if name in secrets:
            continue
        path = [p.lower() for p in name[len("RELIA_") :].split("__") if p]
        if not path:
            continue
        # No setting is named *_secret: RELIA_PAGER_SECRET exported for another config's sink
        # (or with none loaded, as `relia incidents list --url` does) is a secret, not a setting.
        if len(path) == 1 and path[0].endswith("_secret"):
            continue
        try:
            value = _env_value(raw, text=_text_setting(path))
        except RecursionError:  # PyYAML recurses per nesting level: no traceback for "[[[…"
            raise ConfigError("not valid YAML: nested too deeply", where=name) from None
        except ValueError as exc:
            raise ConfigError(str(exc), where=name) from None
        target = out
        for part in path[:-1]:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                break
        else:
            target[path[-1]] = value
            sources[tuple(path)] = name
    return out, sources


#: Tags of the plain scalars an environment value is read as (anything else stays text).
_ENV_SCALAR_TAGS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null"))


def _env_value(raw: str, *, text: bool = False) -> Any:
    """An environment value as a setting: a YAML number, boolean or ``null`` when it is exactly
    one, a list or mapping when it starts with ``[`` or ``{``, else the text as given. YAML would
    cut ``k7 #rest`` at its comment, make ``#…`` or ``&x`` null and drop quotes: a token set so
    would be shortened or gone without a word. ``text``: the setting is text (a token, a URL,
    a name), which always takes the value as given."""
    stripped = raw.strip()
    if text or not stripped:
        return raw
    structured = stripped.startswith(("[", "{"))
    if not structured:
        # The tag YAML gives the plain scalar (PyYAML's resolver is untyped).
        loader = yaml.SafeLoader("")
        tag = loader.resolve(yaml.ScalarNode, stripped, (True, False))  # type: ignore[no-untyped-call]
        if tag not in _ENV_SCALAR_TAGS:
            return raw
    try:
        return yaml.safe_load(raw if structured else stripped)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # An explicit tag with a value it cannot take (!!int abc), or an integer too long for
        # Python to read: PyYAML raises Python's own exceptions.
        node = _unconstructible_node(yaml.compose(raw, Loader=yaml.SafeLoader))
        raise ValueError(f"not valid YAML: {_node_problem(node, exc)}") from None


def _node_problem(node: yaml.ScalarNode | None, exc: BaseException) -> str:
    """What PyYAML's constructor failed on, as one line (its exceptions are Python's own)."""
    if node is not None:
        shown = (
            repr(node.value)
            if len(node.value) <= 40
            else f"a value of {len(node.value)} characters"
        )
        return f"{shown} is not a valid {_short_tag(node.tag)}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _text_setting(path: Sequence[str]) -> bool:
    """Whether the setting at ``path`` (lower-case keys) is text: a str or secret field."""
    model: type[BaseModel] = ReliaConfig
    for i, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            return False
        kinds = [get_args(k)[0] if get_origin(k) is Annotated else k for k in _union_args(field)]
        models = [k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)]
        if i < len(path) - 1:
            if not models:
                return False
            model = models[0]
            continue
        return bool(kinds) and all(k in (str, SecretStr, type(None)) for k in kinds)
    return False


def _union_args(field: Any) -> list[Any]:
    annotation = field.annotation
    args = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else ()
    return list(args) if args else [annotation]


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_error(
    err: Mapping[str, Any],
    where: str,
    root: yaml.Node | None,
    env_sources: Mapping[tuple[str, ...], str],
) -> str:
    loc = tuple(err.get("loc", ()))
    field = ".".join(str(p) for p in loc) or "(top level)"
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    kind = err.get("type")
    if kind == "extra_forbidden":
        msg = unknown_field(ReliaConfig, loc)
    elif kind == "model_type":  # pydantic names its class: "a valid dictionary or HostConfig"
        msg = f"expected a mapping of settings, got {_yaml_kind(err.get('input'))}"
    elif kind in ("path_type", "path_parsing"):
        msg = f"expected a path, got {_yaml_kind(err.get('input'))}"
    elif kind == "int_parsing" and _FLOAT_TEXT.fullmatch(text := str(err.get("input", ""))):
        # YAML 1.1 reads 1e6 (no dot) as text: pydantic's "unable to parse string" hides why.
        msg = f"expected a whole number written out in digits, got {text!r}"
    key = tuple(str(p) for p in loc)
    for path, name in env_sources.items():
        if key[: len(path)] == path:  # the value came from the environment
            return f"{name}: {field}: {msg}"
    line = _line_of(root, loc) if root is not None else None
    place = f"{where}:{line}" if line else where
    # A check across a section's fields (api.auth against api.host, or one on the section
    # itself: ha's lease_ttl against renew_interval) may involve a variable.
    section = key[:-1]
    involved = sorted(
        name
        for path, name in env_sources.items()
        if (section and path[: len(section)] == section)
        or (key and len(path) > len(key) and path[: len(key)] == key)
    )
    also = f" (environment: {', '.join(involved)})" if involved else ""
    return f"{place}: {field}: {msg}{also}"


def _logs_window_problem(cfg: ReliaConfig) -> str | None:
    """Why ``logs.window`` does not fit ``interval`` (None: it does). Lines are counted in the
    window of the tick that read them, so a window that is not a whole number of ticks gets no
    tick now and then and reads 0: a quiet file where there was none."""
    if not cfg.logs.files:
        return None
    window_ms = round(cfg.logs.window * 1000)
    tick_ms = round(cfg.interval * 1000)
    if window_ms >= tick_ms and window_ms % tick_ms == 0:
        return None
    fits = human_duration(math.ceil(window_ms / tick_ms) * tick_ms / 1000)
    return (
        f"{human_duration(cfg.logs.window)} is not a multiple of interval "
        f"({human_duration(cfg.interval)}): lines are counted in the window of the tick that "
        f"read them, so some windows would get no tick and read 0; use {fits} or another "
        "multiple of interval"
    )


def _yaml_root(path: str | Path | None) -> yaml.Node | None:
    """The YAML node tree of the config file at ``path`` (None without one, or when it cannot
    be read again): for the line numbers of checks made after :func:`load_config` read it."""
    if path is None:
        return None
    try:
        return yaml.compose(Path(path).read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        return None  # load_config read it already; a line number is all this is for


def log_file_warnings(cfg: ReliaConfig, path: str | Path | None) -> list[str]:
    """``file:line: logs.files.N.path: warning: …`` for each log file that is not there:
    ``relia up`` waits for it, but a typo or a missing directory is the likelier cause."""
    root = _yaml_root(path)
    out = []
    for i, f in enumerate(cfg.logs.files):
        if f.path.exists():
            continue
        line = _line_of(root, ("logs", "files", i, "path")) if root is not None else None
        place = f"{path}:{line}" if line else str(path or "<defaults>")
        what = "no such file" if f.path.parent.is_dir() else "no such file, nor its directory"
        out.append(
            f"{place}: logs.files.{i}.path: warning: {what}: {f.path} "
            "(relia up waits for it to appear)"
        )
    return out


def api_warnings(cfg: ReliaConfig, path: str | Path | None) -> list[str]:
    """``file:line: api.enabled: warning: …`` when the API is off while remote-write is on:
    remote-write is served by the API, so it is off too, which the config alone does not say."""
    if cfg.api.enabled or not cfg.ingest.remote_write:
        return []
    root = _yaml_root(path)
    line = _line_of(root, ("api", "enabled")) if root is not None else None
    place = f"{path}:{line}" if line else str(path or "<defaults>")
    return [
        f"{place}: api.enabled: warning: false turns remote-write ingest off too (POST "
        "/api/v1/write is served by the API); set ingest.remote_write: false if that is meant"
    ]


_FLOAT_TEXT = re.compile(r"[-+]?[0-9]*\.?[0-9]+[eE][-+]?[0-9]+")


def _yaml_kind(value: object) -> str:
    """How YAML wrote ``value``, for a message (never the value itself: it may be a secret)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    kinds = {dict: "a mapping", list: "a list", str: "text", int: "a number", float: "a number"}
    return kinds.get(type(value), type(value).__name__)


def check_slo_files(cfg: ReliaConfig, path: str | Path | None) -> None:
    """Raise :class:`ConfigError` for each ``slos.files`` entry that does not exist, as
    ``file:line: slos.files.N: no such file: …`` (the spec loader's own error names only the spec
    path, which read from another directory said neither where it was listed nor from where a
    relative path is read)."""
    root = _yaml_root(path)
    lines = []
    for i, f in enumerate(cfg.slos.files):
        if f.exists():
            continue
        line = _line_of(root, ("slos", "files", i)) if root is not None else None
        place = f"{path}:{line}" if line else str(path or "<defaults>")
        rel = "" if f.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        lines.append(f"{place}: slos.files.{i}: no such file: {f}{rel}")
    if lines:
        raise ConfigError("\n".join(lines))


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    secrets: bool = True,
) -> ReliaConfig:
    """Load and validate ``relia.yaml`` (or defaults when ``path`` is None).

    ``secrets=False`` skips the check that each webhook sink's ``secret_env`` is set: for
    commands that only read (``relia incidents``), which should not need the signing secret.
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
        except yaml.reader.ReaderError as exc:
            # No problem_mark, and str() is two lines; its position gives the line.
            at = text.count("\n", 0, exc.position) + 1
            char = exc.character if isinstance(exc.character, int) else ord(exc.character)
            raise ConfigError(
                f"{where}:{at}: not valid YAML: unacceptable character #x{char:04x}: {exc.reason}"
            ) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{where}{line}: not valid YAML: {problem}") from None
        except RecursionError:  # PyYAML recurses per nesting level: no traceback for "[[[…"
            raise ConfigError(f"{where}: not valid YAML: nested too deeply") from None
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # An explicit tag with a value it cannot take (``!!int abc``): PyYAML raises
            # Python's own exceptions, without a place; the node that fails gives the line.
            node = _unconstructible_node(root)
            line = f":{node.start_mark.line + 1}" if node is not None else ""
            raise ConfigError(
                f"{where}{line}: not valid YAML: {_node_problem(node, exc)}"
            ) from None
        repeats = sorted(repeated_keys(root), key=lambda r: r[1])
        if repeats:
            raise ConfigError(
                "\n".join(
                    f"{where}:{line}: {'.'.join(str(p) for p in loc)}: written twice in one "
                    f"mapping (first at line {first})"
                    for loc, line, first in repeats
                )
            )
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError("expected a mapping of settings at the top level", where=f"{where}:1")
        data = loaded
    env, env_sources = _env_overrides(environ, _secret_env_names(data))
    try:
        # The environment goes along as context: a webhook sink checks its secret_env there.
        cfg = ReliaConfig.model_validate(
            _merge(data, env), context={"environ": environ, "secrets": secrets}
        )
    except ValidationError as exc:
        lines = [_format_error(e, where, root, env_sources) for e in exc.errors()]
        raise ConfigError("\n".join(lines)) from None
    # Across sections (logs.window against the top-level interval): checked on the result.
    problem = _logs_window_problem(cfg)
    if problem is not None:
        err = {"loc": ("logs", "window"), "msg": problem}
        raise ConfigError(_format_error(err, where, root, env_sources))
    clashes = [
        _format_error({"loc": loc, "msg": msg}, where, root, env_sources)
        for loc, msg in duplicate_source_names(cfg)
    ]
    if clashes:
        raise ConfigError("\n".join(clashes))
    return cfg


def duplicate_source_names(cfg: ReliaConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Each source that ``relia up`` would build under a name another already has, as (its
    location, message): series, health and the WAL are told apart by source name."""
    named: list[tuple[str, tuple[str | int, ...]]] = []
    if cfg.host.enabled:
        named.append(("host", ("host",)))  # relia.sources.host's name
    named += [(t.name, ("scrape", i, "name")) for i, t in enumerate(cfg.scrape)]
    named += [(p.name, ("prometheus", i, "name")) for i, p in enumerate(cfg.prometheus)]
    if cfg.api.enabled and cfg.ingest.remote_write:
        named.append(("remote_write", ("ingest", "remote_write")))  # relia.ingest.source's
    seen: dict[str, tuple[str | int, ...]] = {}
    clashes = []
    for name, loc in named:
        if name in seen:
            first = ".".join(str(p) for p in seen[name])
            clashes.append((loc, f"source name {name!r} is already used by {first}"))
        else:
            seen[name] = loc
    return clashes
