"""Log-parsing accuracy as the Loghub-2.0 study measures it: GA, FGA, PA and FTA.

The four metrics compare, line by line, the template a parser gave each log line with the
ground-truth template of that line. They follow the evaluation code of the Loghub-2.0 benchmark
(logpai/loghub-2.0, ``benchmark/logparser/utils/evaluator.py`` for GA/FGA,
``benchmark/evaluation/utils/PA_calculator.py`` for PA and
``benchmark/evaluation/utils/template_level_analysis.py`` for FTA):

- A *group* is the set of lines that share one template string. Lines are grouped by identical
  text on both sides, as the reference does (it groups by the ``EventTemplate`` column), so two
  parser clusters that happen to print the same template count as one group.
- **GA** (grouping accuracy): the share of lines whose ground-truth group is exactly one predicted
  group (the same set of lines, whatever the template text).
- **FGA** (F1 of grouping accuracy): template level. A correctly grouped template is a
  ground-truth group that equals a predicted group; PGA = correct / predicted groups,
  RGA = correct / ground-truth groups, FGA = their harmonic mean.
- **PA** (parsing accuracy): the share of lines whose predicted template equals the ground-truth
  template exactly.
- **FTA** (F1 of template accuracy): a predicted group is correct when every line in it has the
  ground-truth template equal to the predicted text. As in the reference code, this does not ask
  the ground-truth group to be complete (other lines of that template may sit in other predicted
  groups). PTA = correct / predicted groups, RTA = correct / ground-truth groups, FTA = F1.

No template correction or normalisation is applied to the parser's output: the reference
evaluator (``evaluator_main.py``) compares the parser's ``EventTemplate`` column as written with
the corrected ground truth (``*_structured_corrected.csv``, which already carries the correction);
the study's ``correct_single_template`` rules run only inside some parsers (LogPPT, UniParser, the
LLM-based ones) as part of the parser, never in the evaluation. Comparison is exact, whitespace
included.

Checked against the published figures: Drain3 run with the study's per-system Drain settings
scores GA 0.853 and FTA 0.280 on Loghub-2k (corrected) with this module; the study reports Drain
at GA 0.85 and FTA 0.28.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import polars as pl

from relia.errors import DataError

__all__ = ["ParseScores", "evaluate"]


@dataclass(frozen=True, slots=True)
class ParseScores:
    """Accuracy of one parse against its ground truth (all fractions in [0, 1])."""

    ga: float
    """Grouping accuracy: share of lines in a correctly grouped template."""
    fga: float
    """F1 of PGA and RGA (template-level grouping accuracy)."""
    pa: float
    """Parsing accuracy: share of lines whose template text is exactly right."""
    fta: float
    """F1 of PTA and RTA (template-level exact-template accuracy)."""
    pga: float
    """Correctly grouped templates / predicted templates."""
    rga: float
    """Correctly grouped templates / ground-truth templates."""
    pta: float
    """Correct predicted templates / predicted templates."""
    rta: float
    """Correct predicted templates / ground-truth templates."""
    lines: int
    predicted_templates: int
    truth_templates: int
    correct_groups: int
    """Ground-truth groups that are exactly one predicted group (the numerator of PGA/RGA)."""
    correct_templates: int
    """Predicted groups that are pure and whose text is the ground truth (numerator of PTA/RTA)."""

    def as_dict(self) -> dict[str, float | int]:
        """The fields as a plain dict (for JSON)."""
        return asdict(self)


def _f1(precision: float, recall: float) -> float:
    # The reference defines F1 = 0 when both are 0 rather than dividing by zero.
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _column(name: str, values: Sequence[str]) -> pl.Series:
    try:
        col = pl.Series(name, values, dtype=pl.String, strict=True)
    except (TypeError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"templates must be strings ({exc})", where=name) from None
    if col.null_count():
        first = int(col.is_null().arg_true()[0])
        # Line numbers count from 1, as a file's lines do (the index is 0-based).
        raise DataError(f"line {first + 1}: template is missing (None)", where=name)
    return col


def evaluate(predicted_templates: Sequence[str], truth_templates: Sequence[str]) -> ParseScores:
    """Score a parse: per-line template strings of the parser and of the ground truth.

    Both sequences are in line order and of equal length; lines are grouped by identical template
    text. Raises :class:`~relia.errors.DataError` when the lengths differ, there are no lines, or a
    template is not a string.
    """
    pred = _column("predicted_templates", predicted_templates)
    truth = _column("truth_templates", truth_templates)
    if len(pred) != len(truth):
        raise DataError(
            f"{len(pred)} predicted templates for {len(truth)} ground-truth lines",
            where="predicted_templates",
        )
    n = len(pred)
    if n == 0:
        raise DataError("no lines to score", where="truth_templates")

    # One row per (truth group, predicted group) pair that shares at least one line, with the
    # sizes of both whole groups: every metric is a filter and a sum over these pairs.
    pairs = (
        pl.DataFrame([truth.alias("t"), pred.alias("p")])
        .group_by("t", "p")
        .agg(pl.len().alias("n_tp"))
        .with_columns(
            pl.col("n_tp").sum().over("t").alias("n_t"),
            pl.col("n_tp").sum().over("p").alias("n_p"),
        )
    )
    same_group = (pl.col("n_tp") == pl.col("n_t")) & (pl.col("n_tp") == pl.col("n_p"))
    same_text = pl.col("t") == pl.col("p")
    row = pairs.select(
        pl.col("t").n_unique().alias("truth_templates"),
        pl.col("p").n_unique().alias("predicted_templates"),
        same_group.sum().alias("correct_groups"),
        pl.col("n_tp").filter(same_group).sum().alias("grouped_lines"),
        pl.col("n_tp").filter(same_text).sum().alias("exact_lines"),
        # A pure predicted group (n_tp == n_p) whose text is its one ground-truth template.
        (same_text & (pl.col("n_tp") == pl.col("n_p"))).sum().alias("correct_templates"),
    ).row(0, named=True)

    n_pred = int(row["predicted_templates"])
    n_truth = int(row["truth_templates"])
    correct_groups = int(row["correct_groups"])
    correct_templates = int(row["correct_templates"])
    pga, rga = correct_groups / n_pred, correct_groups / n_truth
    pta, rta = correct_templates / n_pred, correct_templates / n_truth
    return ParseScores(
        ga=int(row["grouped_lines"]) / n,
        fga=_f1(pga, rga),
        pa=int(row["exact_lines"]) / n,
        fta=_f1(pta, rta),
        pga=pga,
        rga=rga,
        pta=pta,
        rta=rta,
        lines=n,
        predicted_templates=n_pred,
        truth_templates=n_truth,
        correct_groups=correct_groups,
        correct_templates=correct_templates,
    )
