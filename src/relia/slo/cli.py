"""``relia slo …``: validate specs, write Prometheus rules, report budgets.

Each command turns every :class:`relia.errors.ReliaError` into one line and exit code 2 through
``relia._cliutil.user_errors``; messages go to ``relia._cliutil.err_console``.
"""

from __future__ import annotations

import typer

__all__ = ["slo_app"]

slo_app = typer.Typer(
    help="SLOs and error budgets: validate specs, write Prometheus rules, report budgets.",
    no_args_is_help=True,
)

# Commands are registered below, one block each: validate, rules, report.
