"""``relia slo …``: validate specs, write Prometheus rules, report budgets.

Each command turns every :class:`relia.errors.ReliaError` into one line and exit code 2 through
``relia._cliutil.user_errors``; messages go to ``relia._cliutil.err_console``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from relia._cliutil import (
    Staged,
    check_output_place,
    check_url,
    count_of,
    err_console,
    output_path,
    same_file,
    stdout_console,
    user_errors,
    write_atomically,
)

__all__ = ["slo_app"]

slo_app = typer.Typer(
    help="SLOs and error budgets: validate specs, write Prometheus rules, report budgets.",
    no_args_is_help=True,
)

# Commands are registered below, one block each: validate, rules, report.


# --- validate ------------------------------------------------------------------------------


@slo_app.command("validate")
@user_errors
def validate(
    files: Annotated[
        list[Path], typer.Argument(help="SLO spec files: relia, Sloth prometheus/v1, OpenSLO")
    ],
    sloth_windows: Annotated[
        Path | None,
        typer.Option(
            "--sloth-windows",
            help="Sloth AlertWindows file: period and alert windows for the Sloth specs",
        ),
    ] = None,
) -> None:
    """Check SLO specs: one line per SLO, or every problem as FILE:LINE: document N: field."""
    from relia.slo.burnrate import check_alert_windows
    from relia.slo.loader import load_specs
    from relia.slo.spec import format_duration

    loaded = load_specs(files, sloth_windows=sloth_windows)
    # The default alert windows do not fit every period (under 3d); `rules` and `report`
    # refuse such an SLO, so validate must report it too rather than call it OK.
    check_alert_windows(item.slo for item in loaded)
    rows = []
    for item in loaded:
        slo = item.slo
        period = format_duration(slo.window.period_s)
        if slo.window.rolling:
            period += " rolling"
        else:
            start = slo.window.calendar_start
            period += (
                f" calendar from {start:%Y-%m-%d %H:%M} {slo.window.timezone}" if start else ""
            )
        budgeting = slo.budgeting.value
        if slo.timeslice_window_s is not None:
            budgeting += f" ({format_duration(slo.timeslice_window_s)} slices)"
        rows.append((slo.id, item.format, f"{slo.objective:.10g}%", period, budgeting))
    widths = [max((len(r[i]) for r in rows), default=0) for i in range(4)]
    for row in rows:
        cells = [v.ljust(w) for v, w in zip(row, widths, strict=False)] + [row[4]]
        typer.echo("  ".join(cells))
    if not loaded:  # the files held only AlertWindows (a file of nothing at all is refused)
        typer.echo("no SLOs, only Sloth AlertWindows: OK")
        return
    typer.echo(f"{len(loaded)} SLO{'s' if len(loaded) != 1 else ''} OK")


# --- rules ---------------------------------------------------------------------------------


@slo_app.command("rules")
@user_errors
def rules(
    files: Annotated[
        list[Path], typer.Argument(help="SLO spec files: relia, Sloth prometheus/v1, OpenSLO")
    ],
    out_arg: Annotated[
        str | None,
        typer.Option("--out", "-o", metavar="PATH", help="write the rule file here, not to stdout"),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", "-l", help="extra label KEY=VALUE on every series (repeatable)"),
    ] = None,
    sloth_windows: Annotated[
        Path | None,
        typer.Option(
            "--sloth-windows",
            help="Sloth AlertWindows file: period and alert windows for the Sloth specs",
        ),
    ] = None,
) -> None:
    """Prometheus recording and alerting rules for the SLOs (Sloth-compatible names and labels;
    long windows computed from 5m recordings). Check them with `promtool check rules`."""
    from relia.errors import ConfigError, DataError
    from relia.slo.loader import load_alerting_slos
    from relia.slo.rules import render_rules, rule_groups

    extra: dict[str, str] = {}
    for item in label or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected KEY=VALUE, got {item!r}", where="--label")
        if key in extra:
            raise ConfigError(
                f"label {key!r} is given twice ({key}={extra[key]}, {item})", where="--label"
            )
        extra[key] = value
    out = output_path(out_arg, "--out")
    inputs = [*files, *([sloth_windows] if sloth_windows is not None else [])]
    if out is not None and any(same_file(out, f) for f in inputs):
        # Checked first: the rules would replace the spec they were made from.
        raise DataError(f"{out} is also an input; write elsewhere", where="--out")
    slos = load_alerting_slos(files, sloth_windows=sloth_windows)
    text = render_rules(slos, extra_labels=extra)
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        write_atomically(out, text.encode("utf-8"))  # Prometheus may be reading the rules file
    except OSError as exc:
        raise DataError(f"cannot write: {exc.strerror or exc}", where=str(out)) from None
    n = sum(len(g["rules"]) for g in rule_groups(slos, extra_labels=extra)["groups"])
    counted = f"{count_of(n, 'rule')} for {count_of(len(slos), 'SLO')}"
    err_console.print(f"wrote {counted} to {out}", markup=False)


# --- report --------------------------------------------------------------------------------


@slo_app.command("report")
@user_errors
def report(
    files: Annotated[
        list[Path], typer.Argument(help="SLO spec files: relia, Sloth prometheus/v1, OpenSLO")
    ],
    prometheus: Annotated[
        str, typer.Option("--prometheus", help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    ],
    at: Annotated[
        str, typer.Option("--at", help="evaluation time: ISO-8601, epoch s, now, now-1h")
    ] = "now",
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    plot_arg: Annotated[
        str | None,
        typer.Option("--plot", metavar="PATH", help="budget burn-down chart (.png or .html)"),
    ] = None,
    step: Annotated[
        str | None,
        typer.Option("--step", help="query resolution (default 5m; timeslices: the slice)"),
    ] = None,
    min_range: Annotated[
        str,
        typer.Option(
            "--min-range",
            help="shortest range put in for {{.window}} (default 5m; about 2x the scrape "
            "interval keeps short time slices sharp)",
        ),
    ] = "5m",
    sloth_windows: Annotated[
        Path | None,
        typer.Option(
            "--sloth-windows",
            help="Sloth AlertWindows file: period and alert windows for the Sloth specs",
        ),
    ] = None,
    timeout: Annotated[
        str,
        typer.Option(
            "--timeout",
            help="how long to wait for each Prometheus answer, e.g. 2m (a bare number is seconds)",
        ),
    ] = "30s",
) -> None:
    """Error budgets from Prometheus: per SLO the SLI over its window, the budget (total, spent,
    remaining), burn rates over each alert window, firing alerts, and when the budget runs out.

    The evaluation time is rounded down to the query step (5m by default).
    """
    import json
    import time

    from relia.config import parse_duration
    from relia.errors import DataError
    from relia.slo.evaluate import SloStatus, evaluate_slo
    from relia.slo.loader import load_alerting_slos
    from relia.slo.report import alerts_table, plot_burn_down, report_json, summary_table
    from relia.slo.spec import parse_duration_seconds
    from relia.sources.prometheus import PrometheusClient, QueryRefused
    from relia.timeparse import parse_time

    plot = output_path(plot_arg, "--plot")
    if plot is not None and plot.suffix.lower() not in (".png", ".html", ".htm"):
        raise DataError(f"plot must end in .png or .html, got {plot.name!r}", where="--plot")
    if plot is not None:
        inputs = [*files, *([sloth_windows] if sloth_windows is not None else [])]
        if any(same_file(plot, f) for f in inputs):
            raise DataError(f"{plot} is also an input; write elsewhere", where="--plot")
        check_output_place(plot, "cannot write plot")
    try:
        at_ms = parse_time(at, now_ms=time.time_ns() // 1_000_000)
    except ValueError as exc:
        raise DataError(str(exc), where="--at") from None
    step_s: int | None = None
    if step is not None:
        try:
            step_s = parse_duration_seconds(step)
        except ValueError as exc:
            raise DataError(str(exc), where="--step") from None
    try:
        min_range_s = parse_duration_seconds(min_range)
    except ValueError as exc:
        raise DataError(str(exc), where="--min-range") from None
    if not prometheus.startswith(("http://", "https://")):
        raise DataError(
            f"expected an http:// or https:// URL, got {prometheus!r}", where="--prometheus"
        )
    check_url(prometheus, "--prometheus")
    try:
        timeout_s = parse_duration(timeout)  # as relia detect --timeout and slos.timeout read it
    except ValueError as exc:
        raise DataError(str(exc), where="--timeout") from None
    slos = load_alerting_slos(files, sloth_windows=sloth_windows)
    statuses: list[SloStatus] = []
    refused: dict[str, str] = {}
    with PrometheusClient(prometheus, timeout=timeout_s) as client:
        for slo in slos:
            try:
                statuses.append(
                    evaluate_slo(client, slo, at_ms, step_s=step_s, min_range_s=min_range_s)
                )
            except (QueryRefused, DataError) as exc:
                # This SLO's query is at fault (refused, or answering several series where one
                # is due): report the others. A Prometheus that cannot be reached fails them
                # all alike, so that still stops the report at once.
                refused[slo.id] = str(exc)
    if plot is not None:
        # Drawn beside the target and renamed over it: a failed run leaves the old chart whole.
        staged = Staged()
        try:
            try:
                plot_burn_down(staged.part(plot), statuses)
            except DataError as exc:  # it names the temporary file: name the plot
                raise DataError(exc.message, where=str(plot)) from None
            staged.commit()
        finally:
            staged.discard()
        err_console.print(f"wrote {plot}", markup=False)
    if as_json:
        doc = report_json(statuses)
        if refused:
            doc["errors"] = refused
        typer.echo(json.dumps(doc, indent=2))
    else:
        out = stdout_console()
        out.print(summary_table(statuses))
        out.print(alerts_table(statuses))
    if refused:
        for slo_id, error in refused.items():
            # The error names the SLO after its source; this line names it first, so once is enough.
            error = error.replace(f"SLO {slo_id}: ", "", 1)
            err_console.print(f"relia: error: SLO {slo_id}: {error}", markup=False, soft_wrap=True)
        raise typer.Exit(2)
