"""Sloth ``prometheus/v1`` specs → relia SLOs.

Sloth's spec (https://sloth.dev, ``pkg/prometheus/api/v1``) read field by field, with Sloth's
own rules: the SLO's labels are the service labels merged with its own; the page and ticket alerts
take ``alerting.labels``/``annotations`` plus their own; ``alerting.name`` is required unless both
alerts are disabled; the period is 30 days unless an AlertWindows file says otherwise
(``load_slos(..., sloth_windows=...)``, as ``sloth generate --slo-period-windows-path``). SLI
plugins run Go code inside Sloth, so relia cannot read them and says so.

Differences from Sloth, all stricter: unknown fields are errors (Sloth ignores them), label names
must be Prometheus label names, the alert name must be a Prometheus alert name (promtool refuses
the rules otherwise), queries may use no template but ``{{.window}}``, the objective must be
below 100 (Sloth allows exactly 100, which leaves no error budget), and a key written twice in one
mapping is an error (Sloth keeps the last).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from relia._yamlkeys import Loc
from relia.slo.loader import (
    AlertName,
    Built,
    Document,
    InputModel,
    Labels,
    Name,
    Problems,
    Query,
    SeriesLabels,
    Text,
    build_slo,
    camel_name,
    list_items,
    validate,
)
from relia.slo.spec import AlertWindow

__all__ = ["from_document"]


class _Alert(InputModel):
    disable: bool = False
    labels: Labels = Field(default_factory=dict)
    annotations: Labels = Field(default_factory=dict)


class _Alerting(InputModel):
    name: AlertName | None = None
    labels: Labels = Field(default_factory=dict)
    annotations: Labels = Field(default_factory=dict)
    page_alert: _Alert = Field(default_factory=_Alert)
    ticket_alert: _Alert = Field(default_factory=_Alert)


class _Events(InputModel):
    error_query: Query
    total_query: Query


class _Raw(InputModel):
    error_ratio_query: Query


class _Plugin(InputModel):
    id: Text
    options: dict[str, Any] | None = None


class _SLI(InputModel):
    events: _Events | None = None
    raw: _Raw | None = None
    plugin: _Plugin | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> _SLI:
        given = [k for k in ("events", "raw", "plugin") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of events, raw and plugin")
        return self


class _SLO(InputModel):
    name: Name
    objective: float = Field(gt=0, lt=100)
    description: Text = ""
    labels: SeriesLabels = Field(default_factory=dict)
    sli: _SLI
    alerting: _Alerting = Field(default_factory=_Alerting)


class _Spec(InputModel):
    version: Literal["prometheus/v1"]
    service: Name
    labels: SeriesLabels = Field(default_factory=dict)
    slos: list[Any] = Field(min_length=1)


# Where each field of the built SLO was written in the Sloth spec (for problems found by the
# SLO model itself, such as an objective of exactly 100).
_RENAME: dict[str, Loc] = {
    "objective": ("objective",),
    "name": ("name",),
    "service": ("name",),
    "description": ("description",),
    "sli": ("sli",),
    "labels": ("labels",),
    "alerting": ("alerting",),
}


def from_document(
    doc: Document,
    problems: Problems,
    *,
    period_s: int = 30 * 86400,
    windows: tuple[AlertWindow, ...] | None = None,
) -> list[Built]:
    """The SLOs of one Sloth ``prometheus/v1`` document; problems are recorded, not raised."""
    top = validate(doc, _Spec, doc.data, (), problems)
    service = top.service if top is not None else "?"
    service_labels = top.labels if top is not None else {}
    built: list[Built] = []
    for i, raw in enumerate(list_items(doc, top, "slos")):
        loc: Loc = ("slos", i)
        item = validate(doc, _SLO, raw, loc, problems)
        if item is None:
            continue
        if item.sli.plugin is not None:
            problems.add(
                doc,
                (*loc, "sli", "plugin"),
                f"SLI plugins are not supported (plugin {item.sli.plugin.id!r} runs inside "
                "Sloth); write the plugin's queries as sli.events or sli.raw",
            )
            continue
        alerting = item.alerting
        page, ticket = alerting.page_alert, alerting.ticket_alert
        if alerting.name is None and not (page.disable and ticket.disable):
            problems.add(
                doc,
                (*loc, "alerting", "name"),
                "required field is missing (Sloth needs the alert name unless page_alert and "
                "ticket_alert are both disabled)",
            )
            continue
        if item.sli.events is not None:
            sli = {"kind": "events", **item.sli.events.model_dump()}
        else:
            assert item.sli.raw is not None  # _SLI allows exactly one
            sli = {"kind": "raw", **item.sli.raw.model_dump()}
        fields: dict[str, Any] = {
            "service": service,
            "name": item.name,
            "description": item.description,
            "objective": item.objective,
            "labels": {**service_labels, **item.labels},
            "sli": sli,
            "window": {"period_s": period_s, "rolling": True},
            "alert_windows": windows,
            "alerting": {
                # Sloth leaves the name empty when no alert is generated; relia's model wants
                # one, so it is made from the SLO id (it names no rule).
                "name": alerting.name or camel_name(service, item.name),
                "labels": alerting.labels,
                "annotations": alerting.annotations,
                "page": {
                    "disabled": page.disable,
                    "labels": page.labels,
                    "annotations": page.annotations,
                },
                "ticket": {
                    "disabled": ticket.disable,
                    "labels": ticket.labels,
                    "annotations": ticket.annotations,
                },
            },
        }
        if top is None:
            continue
        slo = build_slo(doc, loc, fields, problems, _RENAME)
        if slo is not None:
            built.append(Built(slo, "sloth", doc, loc))
    return built
