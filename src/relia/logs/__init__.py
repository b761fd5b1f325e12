"""Logs: find each line's header, mine message templates, and score logs for anomalies.

The one-call batch entry point is :func:`parse_lines`; the engine uses the parts
(:class:`~relia.logs.header.HeaderFormat`, :class:`~relia.logs.miner.TemplateMiner`) directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from numpy.typing import NDArray

from relia.logs.header import HeaderFormat
from relia.logs.miner import MinerConfig, Template, TemplateMiner

__all__ = ["HeaderFormat", "MinerConfig", "ParsedLog", "Template", "TemplateMiner", "parse_lines"]


class ParsedLog:
    """Raw lines parsed: each line's template id, every id's final template, and (on demand,
    since a Python string per line is costly) each line's message."""

    def __init__(
        self,
        lines: pl.Series,
        template_ids: NDArray[np.int64],
        templates: dict[int, str],
        header: HeaderFormat,
    ) -> None:
        self.lines = lines
        self.template_ids = template_ids
        self.templates = templates
        self.header = header
        self._messages: list[str] | None = None

    @property
    def messages(self) -> list[str]:
        """Each line's message (the line without its header)."""
        if self._messages is None:
            self._messages = self.header.split_many(self.lines).to_list()
        return self._messages


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
    if miner is None:  # not `or`: a fresh miner has no templates, so it is falsy
        miner = TemplateMiner()
    ids = miner.add_lines(series, header.kernel_layout())
    templates = {t.id: t.text for t in miner.templates}
    return ParsedLog(lines=series, template_ids=ids, templates=templates, header=header)
