"""Read SLO specs from YAML files: relia's own format, Sloth and OpenSLO.

Every YAML document is recognised by its header and read by its importer:

- ``apiVersion: relia/v1``: relia's own format (below, and ``docs/slo.md``);
- ``version: prometheus/v1``: Sloth (:mod:`relia.slo.sloth`);
- ``apiVersion: openslo/v1`` (SLO, SLI, DataSource, AlertPolicy, AlertCondition,
  AlertNotificationTarget, Service) and ``openslo/v1alpha`` (:mod:`relia.slo.openslo`);
- ``apiVersion: sloth.slok.dev/v1``, ``kind: AlertWindows``: checked, gives no SLO.

The result is a list of :class:`relia.slo.spec.SLO`, each with its ``source`` (file, document,
path). Nothing stops at the first problem: every problem in every file is collected and raised as
one :class:`~relia.errors.ConfigError` with one line per problem,
``FILE:LINE: document N: slos[0].sli.events.total_query: message``. Line numbers come from the
YAML nodes (PyYAML's composer), so a problem points at the key that holds the bad value.

The helpers in the second half of this module (:class:`Document`, :class:`Problems`, the
field types) are shared by the Sloth and OpenSLO importers.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from relia._fieldnames import unknown_field
from relia._yamlkeys import Loc, repeated_keys
from relia.errors import ConfigError
from relia.slo.burnrate import check_alert_windows
from relia.slo.spec import (
    SLO,
    AlertWindow,
    BudgetingMethod,
    SpecSource,
    format_duration,
    parse_duration_seconds,
)

__all__ = [
    "Document",
    "LoadedSLO",
    "Problem",
    "Problems",
    "load_alerting_slos",
    "load_slo_text",
    "load_slos",
    "load_specs",
    "load_specs_text",
]

_M = typing.TypeVar("_M", bound=BaseModel)

# ---------------------------------------------------------------------------------------------
# Reading YAML: documents with their node trees


_SURROGATE = re.compile(r"[\ud800-\udfff]")


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader without the YAML 1.1 timestamp rule: ``2022-01-01 12:00:00`` stays text, so
    calendar start times are parsed (and their errors reported) in one place, by relia. An
    escape past the last Unicode character is a YAML error (PyYAML raises a bare ValueError)."""

    def scan_flow_scalar_non_spaces(self, double: bool, start_mark: yaml.Mark) -> list[Any]:
        try:
            chunks: list[Any] = super().scan_flow_scalar_non_spaces(double, start_mark)
        except ValueError:  # chr() of the escape just read: only \U has digits for one
            raise yaml.scanner.ScannerError(
                "while scanning a double-quoted scalar",
                start_mark,
                f"\\U{self.prefix(8)} is not a Unicode character (the last is \\U0010FFFF)",
                self.get_mark(),
            ) from None
        # A surrogate escape (JSON's way past \uFFFF) is no character: such text cannot be
        # written as UTF-8, so an API answer or rules file holding it would fail much later.
        for chunk in chunks:
            surrogate = _SURROGATE.search(chunk)
            if surrogate is not None:
                raise yaml.scanner.ScannerError(
                    "while scanning a double-quoted scalar",
                    start_mark,
                    f"\\u{ord(surrogate.group()):04X} is a surrogate, not a character (write "
                    "one past \\uFFFF as \\U and 8 digits)",
                    self.get_mark(),
                )
        return chunks


_SpecLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_int(loader: _SpecLoader, node: yaml.ScalarNode) -> int:
    """An integer Python can also write back as text (error messages quote it): Python refuses
    either way past 4300 digits, with a bare ValueError."""
    try:
        value = loader.construct_yaml_int(node)
        str(value)
    except ValueError:
        raise yaml.constructor.ConstructorError(
            None,
            None,
            f"an integer of {len(node.value)} characters is too long to read",
            node.start_mark,
        ) from None
    return value


_SpecLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)

# Aliases let a small file expand to a huge tree (the "billion laughs"); validating that would
# hang, so a document may hold at most this many nodes once its aliases are expanded.
_MAX_EXPANDED_NODES = 200_000


@dataclass(frozen=True)
class Document:
    """One YAML document: the ``file`` it came from, its 0-based ``index`` in that file, its
    node tree (for line numbers) and its plain data."""

    file: str
    index: int
    node: yaml.Node
    data: Any

    @property
    def base_dir(self) -> Path:
        """The folder relative paths inside this document are resolved against."""
        return Path(self.file).parent


def _expanded_size(node: yaml.Node) -> int:
    """Count the nodes of ``node`` with aliases expanded; raise ValueError on a cycle or when
    the count passes the limit."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def visit(n: yaml.Node) -> int:
        key = id(n)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise ValueError("a YAML alias refers to a node that contains it (recursive data)")
        active.add(key)
        total = 1
        if isinstance(n, yaml.SequenceNode):
            for child in n.value:
                total += visit(child)
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += visit(k) + visit(v)
        active.discard(key)
        if total > _MAX_EXPANDED_NODES:
            raise ValueError(f"more than {_MAX_EXPANDED_NODES:,} YAML nodes once aliases expand")
        sizes[key] = total
        return total

    return visit(node)


# The line breaks YAML's reader counts (a CR LF pair is one).
_YAML_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")


def _parse_yaml(text: str, file: str, problems: Problems) -> list[Document]:
    """Every document of ``text``; a YAML syntax error is recorded and ends the file (documents
    before it are kept)."""
    docs: list[Document] = []
    index = 0
    loader: _SpecLoader | None = None
    try:
        loader = _SpecLoader(text)  # the reader refuses control characters right here
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # pragma: no cover - check_node() said a document follows
                break
            try:
                _expanded_size(node)
            except ValueError as exc:
                problems.add_at(file, node.start_mark.line + 1, index, "", str(exc))
                index += 1
                continue
            for key_loc, key_line, first_line in repeated_keys(node):
                problems.add_at(
                    file,
                    key_line,
                    index,
                    format_loc(key_loc),
                    f"written twice in one mapping (first at line {first_line}); YAML keys must "
                    "be unique",
                )
            data = loader.construct_document(node)
            docs.append(Document(file, index, node, data))
            index += 1
    except yaml.reader.ReaderError as exc:
        # Raised before any document is read (the reader checks the whole text first), so it
        # belongs to no document; its position is an index into the text.
        breaks = _YAML_LINE_BREAK.findall(text, 0, exc.position)
        problems.add_at(
            file, len(breaks) + 1, None, "", f"not valid YAML: {str(exc).splitlines()[0]}"
        )
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        problems.add_at(file, line, index, "", f"not valid YAML: {problem}")
    except RecursionError:
        line = loader.line + 1 if loader is not None else None  # where the reader got to
        problems.add_at(file, line, index, "", "not valid YAML: nested too deeply")
    finally:
        if loader is not None:
            loader.dispose()
    return docs


def _read_file(path: Path, problems: Problems) -> list[Document] | None:
    """The documents of one file, or None when it cannot be read (recorded as a problem)."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add_at(file, None, None, "", "no such file")
        return None
    except IsADirectoryError:
        problems.add_at(file, None, None, "", "is a directory; give the spec files in it")
        return None
    except UnicodeDecodeError:
        problems.add_at(file, None, None, "", "not a text file (not UTF-8)")
        return None
    except OSError as exc:
        problems.add_at(file, None, None, "", f"cannot read: {exc.strerror or exc}")
        return None
    return _parse_yaml(text, file, problems)


# ---------------------------------------------------------------------------------------------
# Problems: every error with file, line, document and field path


@dataclass(frozen=True)
class Problem:
    """One problem in a spec; ``str()`` gives ``FILE:LINE: document N: path: message``."""

    file: str
    line: int | None
    document: int | None  # 0-based; None for problems with the file as a whole
    path: str
    message: str

    def __str__(self) -> str:
        parts = [f"{self.file}:{self.line}" if self.line else self.file]
        if self.document is not None:
            parts.append(f"document {self.document + 1}")
        if self.path:
            parts.append(self.path)
        parts.append(self.message)
        return ": ".join(parts)


def format_loc(loc: Iterable[str | int]) -> str:
    """``("slos", 0, "sli")`` → ``slos[0].sli``. A key that is empty or holds a line break or
    another unprintable character is quoted (``labels['\\r']``), so a problem stays one line."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif not part or not str(part).isprintable() or "." in str(part):
            out += f"[{str(part)!r}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_of(node: yaml.Node, loc: Sequence[str | int]) -> int:
    """The 1-based line of the node at ``loc`` below ``node``; where the path leaves the tree
    (a missing field), the line of the deepest node that exists."""
    line = node.start_mark.line + 1
    current: yaml.Node | None = node
    for part in loc:
        nxt: yaml.Node | None = None
        if isinstance(current, yaml.MappingNode):
            for key_node, value_node in current.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == str(part):
                    nxt = value_node
                    line = key_node.start_mark.line + 1
                    break
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int):
            if 0 <= part < len(current.value):
                nxt = current.value[part]
                line = nxt.start_mark.line + 1
        if nxt is None:
            break
        current = nxt
    return line


def _yaml_type(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the text {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


_EXPECTED = {
    "string_type": "expected text",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
}


def _error_message(err: Mapping[str, Any], model: type[BaseModel] | None) -> str:
    kind = str(err.get("type", ""))
    loc = tuple(err.get("loc", ()))
    value = err.get("input")
    ctx = err.get("ctx") or {}
    msg = str(err.get("msg", "invalid value"))
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return unknown_field(model, loc)
    if kind == "invalid_key":
        return f"field names must be text, got {_yaml_type(value)}"
    if kind in _EXPECTED:
        return f"{_EXPECTED[kind]}, got {_yaml_type(value)}"
    if kind == "finite_number":
        return f"expected a finite number, got {_yaml_type(value)}"
    if kind in ("too_short", "too_long"):
        if isinstance(value, list | dict):
            if kind == "too_short":
                least = ctx.get("min_length", 1)
                return f"needs at least {least} item{'s' if least != 1 else ''}"
            most = ctx.get("max_length", 1)
            return f"takes at most {most} item{'s' if most != 1 else ''}, got {len(value)}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    if msg.startswith("Input should be"):
        return f"{msg.replace('Input should be', 'must be', 1)}, got {_yaml_type(value)}"
    return msg


class Problems:
    """Collects problems; :meth:`raise_if_any` raises them as one :class:`ConfigError`."""

    def __init__(self) -> None:
        self.items: list[Problem] = []

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def add_at(
        self, file: str, line: int | None, document: int | None, path: str, message: str
    ) -> None:
        """Record a problem at an explicit place."""
        self.items.append(Problem(file, line, document, path, message))

    def add(self, doc: Document, loc: Loc, message: str) -> None:
        """Record a problem at field ``loc`` of ``doc`` (line looked up in its node tree)."""
        self.add_at(doc.file, line_of(doc.node, loc), doc.index, format_loc(loc), message)

    def add_validation(
        self,
        doc: Document,
        exc: ValidationError,
        prefix: Loc = (),
        *,
        model: type[BaseModel] | None = None,
        rename: Mapping[str, Loc] | None = None,
    ) -> None:
        """Record every error of a pydantic ``ValidationError`` raised while validating the data
        at ``prefix`` of ``doc`` (with ``model``, to suggest field names for typos). ``rename``
        maps a model field to where it was written in YAML, for models built by an importer
        rather than read directly."""
        for err in exc.errors():
            loc: Loc = tuple(p for p in err.get("loc", ()) if p != "[key]")
            if rename is not None and loc and isinstance(loc[0], str) and loc[0] in rename:
                loc = rename[loc[0]] + loc[1:]
            elif rename is not None:
                loc = ()  # a check across fields of the built model: point at the whole item
            self.add(doc, prefix + loc, _error_message(err, model))

    def raise_if_any(self, order: Mapping[str, int] | None = None) -> None:
        """Raise one ConfigError listing every problem (sorted by file, document, line)."""
        if not self.items:
            return
        rank = order or {}
        items = sorted(
            self.items,
            key=lambda p: (rank.get(p.file, len(rank)), p.document or 0, p.line or 0),
        )
        unique = list(dict.fromkeys(str(p) for p in items))
        raise ConfigError("\n".join(unique))


# ---------------------------------------------------------------------------------------------
# Field types shared by the importers


class InputModel(BaseModel):
    """Base of the models that read spec YAML: unknown fields are errors, no silent coercion
    (``"99.9"`` is not a number, ``yes`` is not text), no NaN or infinity."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class CamelInputModel(InputModel):
    """:class:`InputModel` for camelCase formats (OpenSLO, Sloth AlertWindows)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False)


def _scalar_text(value: object) -> object:
    """Numbers written without quotes where text is expected become text, as Sloth (Go YAML)
    reads them: ``tier: 2`` is the label value ``"2"``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


def _nonblank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


Text = Annotated[str, BeforeValidator(_scalar_text)]
Name = Annotated[str, BeforeValidator(_scalar_text), AfterValidator(_nonblank)]

_PROM_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_ALERT_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def _label_name(name: str) -> str:
    if name == "__name__":
        raise ValueError("'__name__' is the metric name in Prometheus, not a label that can be set")
    if not _PROM_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a Prometheus label name (letters, digits and _, not starting "
            "with a digit)"
        )
    return name


def _label_value(value: object) -> object:
    if isinstance(value, bool):
        return str(value).lower()
    return _scalar_text(value)


def _none_as_empty(value: object) -> object:
    return {} if value is None else value


LabelName = Annotated[str, AfterValidator(_label_name)]
LabelValue = Annotated[str, BeforeValidator(_label_value)]
Labels = Annotated[dict[LabelName, LabelValue], BeforeValidator(_none_as_empty)]

# Set by relia on every series of an SLO's rules (as Sloth does): an SLO may not set them.
RESERVED_LABELS = frozenset({"sloth_id", "sloth_service", "sloth_slo", "sloth_window"})


def _series_label_name(name: str) -> str:
    if name.startswith("__"):
        raise ValueError(f"{name!r}: label names starting with __ are reserved by Prometheus")
    if name in RESERVED_LABELS:
        raise ValueError(f"label {name!r} is set by relia")
    return name


#: An SLO's (and its service's) labels, which go on every series of its rules: also refused
#: when they would clash with the labels relia sets.
SeriesLabels = Annotated[
    dict[Annotated[LabelName, AfterValidator(_series_label_name)], LabelValue],
    BeforeValidator(_none_as_empty),
]


def alert_name(name: str) -> str:
    """Check that ``name`` can be a Prometheus alert name (it becomes the rules' ``alert:``)."""
    if not _ALERT_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a Prometheus alert name (letters, digits, _ and :, not starting "
            "with a digit), e.g. MyServiceHighErrorRate"
        )
    return name


AlertName = Annotated[str, BeforeValidator(_scalar_text), AfterValidator(alert_name)]


def _duration(value: object) -> int:
    if not isinstance(value, str):
        raise ValueError(f"expected a duration like 5m, 1h or 30d, got {_yaml_type(value)}")
    return parse_duration_seconds(value)


Duration = Annotated[int, BeforeValidator(_duration)]

_WINDOW_PLACEHOLDER = re.compile(r"\{\{\s*\.window\s*\}\}")
_TEMPLATE_ACTION = re.compile(r"\{\{.*?\}\}", re.DOTALL)
WINDOW = "{{.window}}"


def check_query(value: str) -> str:
    """A PromQL query with Sloth's ``{{.window}}`` placeholder, normalised to that spelling;
    any other template action is an error (relia substitutes only the window)."""
    value = _WINDOW_PLACEHOLDER.sub(WINDOW, value)
    other = [m for m in _TEMPLATE_ACTION.findall(value) if m != WINDOW]
    if other:
        raise ValueError(f"unknown template {other[0]!r}; only {WINDOW} is replaced")
    return _nonblank(value)


Query = Annotated[str, BeforeValidator(_scalar_text), AfterValidator(check_query)]


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError naming it when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (expected an IANA name like Europe/Berlin or UTC)"
        ) from None


def calendar_start(value: object, timezone: str) -> datetime:
    """A calendar start (``2022-01-01``, ``2022-01-01 12:00:00`` or ISO 8601 without an offset)
    in ``timezone``, as an aware datetime. ValueError when it cannot be read."""
    tz = zone(timezone)
    if not isinstance(value, str):
        raise ValueError(
            f"expected a date and time like 2024-01-01 00:00:00, got {_yaml_type(value)}"
        )
    try:
        start = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValueError(
            f"cannot read {value!r} as a date and time (expected e.g. 2024-01-01 00:00:00)"
        ) from None
    if start.tzinfo is not None:
        raise ValueError(
            f"{value!r} has a UTC offset; write the local time and give the zone in timezone"
        )
    return start.replace(tzinfo=tz)


# ---------------------------------------------------------------------------------------------
# Loaded SLOs


class LoadedSLO(NamedTuple):
    """An SLO with the spec format it was read from (``relia``, ``sloth``, ``openslo/v1``,
    ``openslo/v1alpha``)."""

    slo: SLO
    format: str


@dataclass
class Built:
    """An SLO an importer built, with the document and path it came from (for problems)."""

    slo: SLO
    format: str
    doc: Document
    loc: Loc


def list_items(doc: Document, top: BaseModel | None, key: str) -> list[Any]:
    """The items of the list ``key`` of a document's top level, also when the top level did not
    validate (so the problems inside the items are found in the same run)."""
    if top is not None:
        return list(getattr(top, key))
    raw = doc.data.get(key) if isinstance(doc.data, dict) else None
    return raw if isinstance(raw, list) else []


def source_of(doc: Document, loc: Loc) -> SpecSource:
    """The :class:`SpecSource` for the item at ``loc`` of ``doc``."""
    return SpecSource(
        file=doc.file, line=line_of(doc.node, loc), document=doc.index, path=format_loc(loc)
    )


def build_slo(
    doc: Document,
    loc: Loc,
    fields: dict[str, Any],
    problems: Problems,
    rename: Mapping[str, Loc],
) -> SLO | None:
    """Validate ``fields`` as an :class:`SLO` at ``loc`` of ``doc``; problems are recorded with
    the spec fields mapped back to the YAML fields by ``rename``."""
    try:
        return SLO.model_validate({**fields, "source": source_of(doc, loc)})
    except ValidationError as exc:
        problems.add_validation(doc, exc, loc, rename=rename)
        return None


def validate(
    doc: Document,
    model: type[_M],
    data: object,
    loc: Loc,
    problems: Problems,
) -> _M | None:
    """Validate ``data`` (found at ``loc`` of ``doc``) as ``model``; None and problems recorded
    when it does not fit."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems.add_validation(doc, exc, loc, model=model)
        return None
    except RecursionError:
        problems.add(doc, loc, "nested too deeply")
        return None


# ---------------------------------------------------------------------------------------------
# Sloth AlertWindows (sloth.slok.dev/v1): custom burn-rate windows for an SLO period


class _SlothWindow(CamelInputModel):
    error_budget_percent: float = Field(gt=0, le=100)
    short_window: Duration
    long_window: Duration


class _SlothWindowPair(CamelInputModel):
    quick: _SlothWindow
    slow: _SlothWindow


class _SlothWindowsSpec(CamelInputModel):
    slo_period: Duration
    page: _SlothWindowPair
    ticket: _SlothWindowPair


class _SlothWindowsDoc(CamelInputModel):
    api_version: Literal["sloth.slok.dev/v1"]
    kind: Literal["AlertWindows"]
    spec: _SlothWindowsSpec


def burn_rate_for(budget_percent: float, period_s: int, long_s: int) -> float:
    """The burn rate that spends ``budget_percent`` % of the budget of ``period_s`` within
    ``long_s`` (SRE Workbook: 2 % of 30d in 1h → 14.4). Computed in Sloth's order of operations
    (hours of budget, then per hour of window) so the floats equal the ones in Sloth's rules."""
    return budget_percent * (period_s / 3600) / 100 / (long_s / 3600)


def check_window(
    doc: Document, loc: Loc, long_s: int, short_s: int, period_s: int, problems: Problems
) -> bool:
    """Short window shorter than the long one, the long one no longer than the period."""
    ok = True
    if short_s >= long_s:
        problems.add(doc, loc, "the short window must be shorter than the long window")
        ok = False
    if long_s > period_s:
        problems.add(
            doc, loc, f"the long window is longer than the SLO period {format_duration(period_s)}"
        )
        ok = False
    return ok


def parse_sloth_alert_windows(
    doc: Document, problems: Problems
) -> tuple[int, tuple[AlertWindow, ...]] | None:
    """A Sloth ``AlertWindows`` document → (SLO period in seconds, its four alert windows)."""
    parsed = validate(doc, _SlothWindowsDoc, doc.data, (), problems)
    if parsed is None:
        return None
    spec = parsed.spec
    period = spec.slo_period
    windows = []
    ok = True
    for severity, pair in (("page", spec.page), ("ticket", spec.ticket)):
        for name, w in (("quick", pair.quick), ("slow", pair.slow)):
            loc: Loc = ("spec", severity, name)
            if not check_window(doc, loc, w.long_window, w.short_window, period, problems):
                ok = False
                continue
            windows.append(
                AlertWindow(
                    severity=severity,
                    name=name,
                    budget_percent=w.error_budget_percent,
                    long_s=w.long_window,
                    short_s=w.short_window,
                    burn_rate=burn_rate_for(w.error_budget_percent, period, w.long_window),
                )
            )
    return (period, tuple(windows)) if ok else None


@dataclass
class _Context:
    """State of one load: problems, alert-window files read so far, Sloth's period."""

    problems: Problems = field(default_factory=Problems)
    window_files: dict[Path, tuple[int, tuple[AlertWindow, ...]] | None] = field(
        default_factory=dict
    )
    sloth_period_s: int = 30 * 86400
    sloth_windows: tuple[AlertWindow, ...] | None = None

    def alert_windows_file(self, path: Path) -> tuple[int, tuple[AlertWindow, ...]] | None:
        """Read (once) a Sloth AlertWindows file; its problems are recorded against it."""
        key = path.resolve()
        if key not in self.window_files:
            result = None
            docs = _read_file(path, self.problems)
            if docs is not None:
                docs = [d for d in docs if d.data is not None]
                if len(docs) != 1:
                    # A document that did not parse is already a problem of this file: one is
                    # enough.
                    if not any(p.file == str(path) for p in self.problems.items):
                        self.problems.add_at(
                            str(path), None, None, "", "expected one Sloth AlertWindows document"
                        )
                else:
                    result = parse_sloth_alert_windows(docs[0], self.problems)
            self.window_files[key] = result
        return self.window_files[key]


# ---------------------------------------------------------------------------------------------
# relia's own format (apiVersion: relia/v1)


class _Severity(InputModel):
    disabled: bool = False
    labels: Labels = Field(default_factory=dict)
    annotations: Labels = Field(default_factory=dict)


class _Alerting(InputModel):
    name: AlertName | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: Labels = Field(default_factory=dict)
    page: _Severity = Field(default_factory=_Severity)
    ticket: _Severity = Field(default_factory=_Severity)


def _needs_window(query: str) -> str:
    if WINDOW not in query:
        raise ValueError(
            f"the query must use {WINDOW} where its range goes, e.g. "
            f"sum(rate(http_requests_total[{WINDOW}]))"
        )
    return query


WindowQuery = Annotated[Query, AfterValidator(_needs_window)]


class _Events(InputModel):
    error_query: WindowQuery | None = None
    good_query: WindowQuery | None = None
    total_query: WindowQuery

    @model_validator(mode="after")
    def _one_numerator(self) -> _Events:
        if (self.error_query is None) == (self.good_query is None):
            raise ValueError("give exactly one of error_query and good_query")
        return self


class _Raw(InputModel):
    error_ratio_query: WindowQuery


_OPS = {"lt": "lt", "<": "lt", "lte": "lte", "<=": "lte", "gt": "gt", ">": "gt"}
_OPS.update({"gte": "gte", ">=": "gte"})


def _op(value: object) -> object:
    return _OPS.get(value, value) if isinstance(value, str) else value


class _Threshold(InputModel):
    query: Query
    op: Annotated[Literal["lt", "lte", "gt", "gte"], BeforeValidator(_op)]
    value: float


class _SLI(InputModel):
    events: _Events | None = None
    raw: _Raw | None = None
    threshold: _Threshold | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> _SLI:
        given = [k for k in ("events", "raw", "threshold") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of events, raw and threshold")
        return self


class _Calendar(InputModel):
    start: Any
    timezone: Text


def _budgeting_shorthand(value: object) -> object:
    return {"method": value} if isinstance(value, str) else value


class _Budgeting(InputModel):
    method: Literal["occurrences", "timeslices", "ratio_timeslices"] = "occurrences"
    timeslice_window: Duration | None = None
    timeslice_target: float | None = Field(None, gt=0, le=100)


class _AlertWindowIn(InputModel):
    severity: Literal["page", "ticket"]
    name: Name
    budget_percent: float | None = Field(None, gt=0, le=100)
    burn_rate: float | None = Field(None, gt=0)
    long_window: Duration
    short_window: Duration

    @model_validator(mode="after")
    def _one_rate(self) -> _AlertWindowIn:
        if (self.budget_percent is None) == (self.burn_rate is None):
            raise ValueError("give exactly one of budget_percent and burn_rate")
        return self


class _ReliaSLO(InputModel):
    name: Name
    description: Text = ""
    objective: float = Field(gt=0, lt=100)
    period: Duration = 30 * 86400
    calendar: _Calendar | None = None
    budgeting: Annotated[_Budgeting, BeforeValidator(_budgeting_shorthand)] = Field(
        default_factory=_Budgeting
    )
    labels: SeriesLabels = Field(default_factory=dict)
    sli: _SLI
    alerting: _Alerting | None = None
    alert_windows: Any = None
    min_events: int | None = Field(None, ge=0)


class _ReliaDoc(InputModel):
    apiVersion: Literal["relia/v1"]  # noqa: N815 - the YAML key
    service: Name
    labels: SeriesLabels = Field(default_factory=dict)
    slos: list[Any] = Field(min_length=1)


_RELIA_RENAME: dict[str, Loc] = {
    "objective": ("objective",),
    "name": ("name",),
    "service": ("name",),
    "description": ("description",),
    "window": ("period",),
    "timeslice_window_s": ("budgeting", "timeslice_window"),
    "timeslice_target": ("budgeting", "timeslice_target"),
    "budgeting": ("budgeting",),
    "sli": ("sli",),
    "labels": ("labels",),
    "alerting": ("alerting",),
    "alert_windows": ("alert_windows",),
    "min_events": ("min_events",),
}


def _relia_alert_windows(
    doc: Document, loc: Loc, value: object, period_s: int, ctx: _Context
) -> tuple[AlertWindow, ...] | None | Literal[False]:
    """``alert_windows``: a path to a Sloth AlertWindows file or an inline list. False when
    there was a problem (recorded)."""
    problems = ctx.problems
    if value is None:
        return None
    if isinstance(value, str):
        path = Path(value)
        if not path.is_absolute():
            path = doc.base_dir / path
        loaded = ctx.alert_windows_file(path)
        if loaded is None:
            problems.add(doc, loc, f"cannot use the alert windows in '{path}' (see its problems)")
            return False
        file_period, windows = loaded
        if file_period != period_s:
            problems.add(
                doc,
                loc,
                f"the alert windows in {path} are for a {format_duration(file_period)} period, "
                f"this SLO's period is {format_duration(period_s)}",
            )
            return False
        return windows
    if not isinstance(value, list) or not value:
        problems.add(
            doc,
            loc,
            "expected the path of a Sloth AlertWindows file or a list of "
            "{severity, name, budget_percent, long_window, short_window}, "
            f"got {_yaml_type(value)}",
        )
        return False
    out: list[AlertWindow] = []
    seen: set[tuple[str, str]] = set()
    ok = True
    for i, item in enumerate(value):
        item_loc = (*loc, i)
        w = validate(doc, _AlertWindowIn, item, item_loc, problems)
        if w is None:
            ok = False
            continue
        if not check_window(doc, item_loc, w.long_window, w.short_window, period_s, problems):
            ok = False
            continue
        if (w.severity, w.name) in seen:
            problems.add(doc, (*item_loc, "name"), f"a {w.severity} window named {w.name!r} twice")
            ok = False
            continue
        seen.add((w.severity, w.name))
        if w.budget_percent is not None:
            percent = w.budget_percent
            rate = burn_rate_for(percent, period_s, w.long_window)
        else:
            rate = float(w.burn_rate or 0.0)
            percent = rate * w.long_window / period_s * 100
            if percent > 100:
                problems.add(
                    doc,
                    (*item_loc, "burn_rate"),
                    f"burning at {rate:g}x for {format_duration(w.long_window)} spends "
                    f"{percent:.0f}% of the budget; the long window is too long for this rate",
                )
                ok = False
                continue
        out.append(
            AlertWindow(
                severity=w.severity,
                name=w.name,
                budget_percent=percent,
                long_s=w.long_window,
                short_s=w.short_window,
                burn_rate=rate,
            )
        )
    return tuple(out) if ok else False


def _relia_document(doc: Document, ctx: _Context) -> list[Built]:
    problems = ctx.problems
    top = validate(doc, _ReliaDoc, doc.data, (), problems)
    service = top.service if top is not None else "?"
    service_labels = top.labels if top is not None else {}
    built: list[Built] = []
    for i, raw in enumerate(list_items(doc, top, "slos")):
        loc: Loc = ("slos", i)
        item = validate(doc, _ReliaSLO, raw, loc, problems)
        if item is None:
            continue
        fields: dict[str, Any] = {
            "service": service,
            "name": item.name,
            "description": item.description,
            "objective": item.objective,
            "labels": {**service_labels, **item.labels},
            "min_events": item.min_events,
            "budgeting": BudgetingMethod(item.budgeting.method),
        }
        ok = True
        window: dict[str, Any] = {"period_s": item.period, "rolling": True}
        if item.calendar is not None:
            try:
                start = calendar_start(item.calendar.start, item.calendar.timezone)
            except ValueError as exc:
                bad = "timezone" if "time zone" in str(exc) else "start"
                problems.add(doc, (*loc, "calendar", bad), str(exc))
                ok = False
            else:
                window.update(rolling=False, calendar_start=start, timezone=item.calendar.timezone)
        fields["window"] = window
        b = item.budgeting
        if b.method == "occurrences":
            for extra in ("timeslice_window", "timeslice_target"):
                if getattr(b, extra) is not None:
                    problems.add(
                        doc, (*loc, "budgeting", extra), "only used by the timeslice methods"
                    )
                    ok = False
        elif b.timeslice_window is None:
            problems.add(
                doc, (*loc, "budgeting"), f"budgeting {b.method} needs timeslice_window (e.g. 1m)"
            )
            ok = False
        if b.method == "ratio_timeslices" and b.timeslice_target is not None:
            # ratio_timeslices averages the slices' ratios: a target would be dropped silently.
            problems.add(
                doc, (*loc, "budgeting", "timeslice_target"), "only used by budgeting timeslices"
            )
            ok = False
        if b.timeslice_window is not None and item.period % b.timeslice_window:
            problems.add(
                doc,
                (*loc, "budgeting", "timeslice_window"),
                f"the slices must tile the period: {format_duration(b.timeslice_window)} does "
                f"not divide {format_duration(item.period)}",
            )
            ok = False
        fields["timeslice_window_s"] = b.timeslice_window
        if b.timeslice_target is not None:
            fields["timeslice_target"] = b.timeslice_target / 100
        sli = item.sli
        if sli.events is not None:
            fields["sli"] = {"kind": "events", **sli.events.model_dump()}
        elif sli.raw is not None:
            fields["sli"] = {"kind": "raw", **sli.raw.model_dump()}
        elif sli.threshold is not None:
            fields["sli"] = {"kind": "threshold", **sli.threshold.model_dump()}
            if b.method == "occurrences":
                problems.add(
                    doc,
                    (*loc, "sli", "threshold"),
                    "a threshold SLI counts good time slices: use budgeting timeslices or "
                    "ratio_timeslices",
                )
                ok = False
        if b.method == "timeslices" and sli.threshold is None and b.timeslice_target is None:
            problems.add(
                doc,
                (*loc, "budgeting"),
                "budgeting timeslices needs timeslice_target: the percent of a slice's events "
                "that must be good for the slice to count as good",
            )
            ok = False
        if item.min_events is not None and sli.events is None:
            problems.add(
                doc,
                (*loc, "min_events"),
                "min_events needs an events SLI: it counts the events of total_query",
            )
            ok = False
        if item.alerting is not None:
            a = item.alerting
            if a.name is None and not (a.page.disabled and a.ticket.disabled):
                problems.add(
                    doc,
                    (*loc, "alerting", "name"),
                    "required field is missing (the alert's name, unless page and ticket are "
                    "both disabled)",
                )
                ok = False
            fields["alerting"] = {
                **a.model_dump(exclude={"name"}),
                "name": a.name or camel_name(service, item.name),
            }
        windows = _relia_alert_windows(
            doc, (*loc, "alert_windows"), item.alert_windows, item.period, ctx
        )
        if windows is False:
            ok = False
        else:
            fields["alert_windows"] = windows
        if not ok or top is None:
            continue
        slo = build_slo(doc, loc, fields, problems, _RELIA_RENAME)
        if slo is not None:
            built.append(Built(slo, "relia", doc, loc))
    return built


def camel_name(*parts: str) -> str:
    """``("my-service", "requests-availability")`` → ``MyServiceRequestsAvailability``: a
    Prometheus alert name made from names that may hold dashes and dots."""
    words = [w for p in parts for w in re.split(r"[^a-zA-Z0-9]+", p) if w]
    name = "".join(w[:1].upper() + w[1:] for w in words) or "SLO"
    return name if not name[0].isdigit() else f"SLO{name}"


# ---------------------------------------------------------------------------------------------
# Format detection and the public functions


def _detect(doc: Document, ctx: _Context) -> str | None:
    """Which importer reads ``doc``: relia, sloth, openslo/v1, openslo/v1alpha, alert-windows;
    None (with a problem recorded) when none does."""
    problems = ctx.problems
    data = doc.data
    if not isinstance(data, dict):
        problems.add(
            doc,
            (),
            f"expected a mapping (an SLO spec) at the top of the document, got {_yaml_type(data)}",
        )
        return None
    api = data.get("apiVersion")
    version = data.get("version")
    if api is not None and version is not None:
        problems.add(doc, ("version",), "give apiVersion or Sloth's version, not both")
        return None
    if version is not None:
        if version == "prometheus/v1":
            return "sloth"
        problems.add(
            doc, ("version",), f"unsupported Sloth spec version {version!r}; expected prometheus/v1"
        )
        return None
    if api == "relia/v1":
        return "relia"
    if api in ("openslo/v1", "openslo/v1alpha"):
        return str(api)
    if api == "sloth.slok.dev/v1":
        if data.get("kind") == "AlertWindows":
            return "alert-windows"
        problems.add(
            doc,
            ("kind",),
            f"Sloth's Kubernetes kind {data.get('kind')!r} is not read; use the "
            "version: prometheus/v1 spec format",
        )
        return None
    if api is not None:
        problems.add(
            doc,
            ("apiVersion",),
            f"unsupported apiVersion {api!r}; expected relia/v1, openslo/v1 or openslo/v1alpha",
        )
        return None
    if "groups" in data:
        problems.add(doc, (), "this is a Prometheus rule file (groups:), not an SLO spec")
        return None
    problems.add(
        doc,
        (),
        "not an SLO spec: expected apiVersion: relia/v1, apiVersion: openslo/v1 or Sloth's "
        "version: prometheus/v1",
    )
    return None


def _load(
    sources: Sequence[tuple[str, list[Document] | None]],
    sloth_windows: Path | str | None,
    problems: Problems,
) -> list[LoadedSLO]:
    # The importers import this module for the shared helpers, so they are imported here.
    from relia.slo import openslo, sloth

    ctx = _Context(problems=problems)
    order = {file: i for i, (file, _) in enumerate(sources)}
    if sloth_windows is not None:
        order.setdefault(str(sloth_windows), len(order))
        loaded = ctx.alert_windows_file(Path(sloth_windows))
        if loaded is not None:
            ctx.sloth_period_s, ctx.sloth_windows = loaded
    built: list[Built] = []
    openslo_docs: list[Document] = []
    for file, all_docs in sources:
        if all_docs is None:
            continue
        docs = [d for d in all_docs if d.data is not None]
        if not docs:
            if not any(p.file == file for p in problems.items):
                problems.add_at(file, None, None, "", "empty: no SLO spec in this file")
            continue
        for doc in docs:
            kind = _detect(doc, ctx)
            if kind == "relia":
                built += _relia_document(doc, ctx)
            elif kind == "sloth":
                built += sloth.from_document(
                    doc, problems, period_s=ctx.sloth_period_s, windows=ctx.sloth_windows
                )
            elif kind == "openslo/v1alpha":
                built += openslo.from_v1alpha(doc, problems)
            elif kind == "openslo/v1":
                openslo_docs.append(doc)
            elif kind == "alert-windows":
                parse_sloth_alert_windows(doc, problems)
    # OpenSLO objects refer to each other by name across documents and files: read them last.
    built += openslo.from_documents(openslo_docs, problems)
    built.sort(key=lambda b: (order.get(b.doc.file, len(order)), b.doc.index))
    first: dict[str, Built] = {}
    for b in built:
        if b.slo.id in first:
            other = first[b.slo.id]
            where = f"{other.doc.file}:{line_of(other.doc.node, other.loc)}"
            problems.add(
                b.doc,
                b.loc,
                f"duplicate SLO id {b.slo.id!r} (service-name); first defined at {where}, "
                f"document {other.doc.index + 1}",
            )
        else:
            first[b.slo.id] = b
    problems.raise_if_any(order)
    return [LoadedSLO(b.slo, b.format) for b in built]


def load_specs(
    paths: Sequence[Path | str], *, sloth_windows: Path | str | None = None
) -> list[LoadedSLO]:
    """Load every SLO in ``paths`` with the format each came from.

    ``sloth_windows`` is a Sloth ``AlertWindows`` file for the Sloth specs among the inputs: its
    ``sloPeriod`` becomes their period and its windows their alerts (as ``sloth generate
    --slo-period-windows-path``); without it Sloth specs have Sloth's default 30-day period and
    the default windows. Raises :class:`ConfigError` listing every problem in every file.
    """
    if not paths:
        raise ConfigError("no spec files given")
    problems = Problems()
    sources = [(str(p), _read_file(Path(p), problems)) for p in paths]
    return _load(sources, sloth_windows, problems)


def load_specs_text(
    text: str, file: str = "<memory>", *, sloth_windows: Path | str | None = None
) -> list[LoadedSLO]:
    """:func:`load_specs` for YAML text already in memory (named ``file`` in problems)."""
    problems = Problems()
    return _load([(file, _parse_yaml(text, file, problems))], sloth_windows, problems)


def load_slos(paths: Sequence[Path | str], *, sloth_windows: Path | str | None = None) -> list[SLO]:
    """Load every SLO in the YAML files ``paths`` (relia, Sloth and OpenSLO specs, several
    documents per file allowed; OpenSLO references resolve across all of them).

    Raises :class:`ConfigError` with one line per problem in every file:
    ``FILE:LINE: document N: field.path: message``. Duplicate SLO ids (``service-name``) across
    the inputs are problems too. See :func:`load_specs` for ``sloth_windows``.
    """
    return [s.slo for s in load_specs(paths, sloth_windows=sloth_windows)]


def load_alerting_slos(
    paths: Sequence[Path | str], *, sloth_windows: Path | str | None = None
) -> list[SLO]:
    """:func:`load_slos`, checked as alerting on them needs (``relia up``, ``relia slo rules``):
    each SLO has alert windows that fit its period, its own or the defaults
    (:func:`relia.slo.burnrate.check_alert_windows`)."""
    slos = load_slos(paths, sloth_windows=sloth_windows)
    check_alert_windows(slos)
    return slos


def load_slo_text(
    text: str, file: str = "<memory>", *, sloth_windows: Path | str | None = None
) -> list[SLO]:
    """:func:`load_slos` for YAML text already in memory (named ``file`` in problems)."""
    return [s.slo for s in load_specs_text(text, file, sloth_windows=sloth_windows)]
