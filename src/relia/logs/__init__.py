"""Logs: find each line's header, mine message templates, and score logs for anomalies.

The one-call batch entry point is :func:`parse_lines`; the engine uses the parts
(:class:`~relia.logs.header.HeaderFormat`, :class:`~relia.logs.miner.TemplateMiner`) directly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from relia.logs.header import HeaderFormat
from relia.logs.miner import MinerConfig, Template, TemplateMiner

__all__ = ["HeaderFormat", "MinerConfig", "ParsedLog", "Template", "TemplateMiner", "parse_lines"]


@dataclass(frozen=True)
class ParsedLog:
    """Raw lines parsed: each line's message and template id, and every id's final template."""

    messages: list[str]
    template_ids: NDArray[np.int64]
    templates: dict[int, str]
    header: HeaderFormat


def parse_lines(
    lines: Sequence[str] | pl.Series,
    *,
    miner: TemplateMiner | None = None,
    header: HeaderFormat | None = None,
) -> ParsedLog:
    """Split headers (learned from the first lines unless given) and mine templates in one batch."""
    series = lines if isinstance(lines, pl.Series) else pl.Series("line", lines, dtype=pl.String)
    if header is None:
        header = HeaderFormat.detect(series.head(2000).to_list())
    messages = header.split_many(series)
    miner = miner or TemplateMiner()
    ids = miner.add_lines(series, header.kernel_layout())
    templates = {t.id: t.text for t in miner.templates}
    return ParsedLog(
        messages=messages.to_list(), template_ids=ids, templates=templates, header=header
    )
