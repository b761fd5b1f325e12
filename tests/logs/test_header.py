"""Header detection on synthetic formats of our own (no Loghub data)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.logs.header import HeaderFormat

MESSAGES = [
    "Accepted password for bob from 10.1.2.3 port 5022 ssh2",
    "session opened for user root by (uid=0)",
    "Connection closed by 10.0.0.9 [preauth]",
    "Invalid user admin from 5.6.7.8",
    "pam_unix(sshd:session): session closed for user root",
    "worker pool resized to 16 threads",
    "cache miss ratio above threshold",
]


def _lines(fmt: str, n: int = 300, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n`` lines in a format and the message each one carries."""
    rng = random.Random(seed)
    lines, messages = [], []
    for _ in range(n):
        msg = rng.choice(MESSAGES)
        ss = f"{rng.randint(0, 59):02d}"
        if fmt == "syslog":
            pid = rng.randint(100, 99999)
            host = f"host{rng.randint(1, 3)}"
            line = f"Mar {rng.randint(1, 28):2d} 10:14:{ss} {host} sshd[{pid}]: {msg}"
        elif fmt == "log4j":
            level = rng.choice(["INFO", "WARN", "ERROR", "DEBUG"])
            thread = rng.choice(["main", "pool-1-thread-2", "http nio 1"])
            cls = rng.choice(["c.e.shop.Orders", "org.x.Bar$Inner", "Main"])
            ms = f"{rng.randint(0, 999):03d}"
            line = f"2024-05-02 10:00:{ss},{ms} {level:<5} [{thread}] {cls}: {msg}"
        elif fmt == "apache":
            level = rng.choice(["error", "notice"])
            line = f"[Sun Dec 04 04:{ss}:44 2005] [{level}] {msg}"
        elif fmt == "pipe":
            level, service = rng.choice(["INFO", "WARN"]), f"svc-{rng.randint(1, 3)}"
            line = f"2024-01-01T10:00:{ss}Z|{level}|{service}|{msg}"
        else:
            line = msg
        lines.append(line)
        messages.append(msg)
    return lines, messages


@pytest.mark.parametrize("fmt", ["syslog", "log4j", "apache", "pipe"])
def test_header_is_found_and_cut_off(fmt: str) -> None:
    lines, messages = _lines(fmt)
    header = HeaderFormat.detect(lines)
    assert header.pattern, fmt
    assert [header.split(line)[1] for line in lines] == messages
    # The batch path (Polars) cuts the same messages as the line path.
    assert header.messages(lines) == messages
    fields, _ = header.split(lines[0])
    assert lines[0].startswith(fields["header"])


def test_pipe_separated_message_may_hold_the_separator() -> None:
    lines, _ = _lines("pipe")
    header = HeaderFormat.detect(lines)
    assert header.rule == "separator '|'" and header.columns == 3
    assert header.split("2024-01-01T10:00:00Z|INFO|svc-1|a | b")[1] == "a | b"


def test_no_header_at_all() -> None:
    lines, messages = _lines("none")
    header = HeaderFormat.detect(lines)
    assert header.pattern == "" and header.rule == "none"
    assert [header.split(line) for line in lines] == [({}, m) for m in messages]
    assert header.messages(lines) == messages


@pytest.mark.parametrize("sample", [[], [""], ["", "   ", "\t"]])
def test_empty_input(sample: list[str]) -> None:
    header = HeaderFormat.detect(sample)
    assert header.pattern == ""
    assert header.split("any line at all") == ({}, "any line at all")
    assert header.messages([]) == []


@pytest.mark.parametrize(
    "fmt",
    [
        "syslog",
        "log4j",
        pytest.param(
            "apache",
            marks=pytest.mark.xfail(
                strict=True,
                reason="header.py: a header learned from bracket/level columns becomes a pattern "
                "of N arbitrary tokens, so any stray line loses its first N words "
                "('Caused by: java.io.IOException: boom' -> header 'Caused by:')",
            ),
        ),
    ],
)
def test_lines_without_the_header_keep_their_whole_text(fmt: str) -> None:
    """Stack-trace continuations and stray lines are all message: nothing is dropped."""
    lines, _ = _lines(fmt)
    header = HeaderFormat.detect(lines)
    for stray in ["\tat com.foo.Bar.run(Bar.java:12)", "Caused by: java.io.IOException: boom"]:
        assert header.split(stray) == ({}, stray.strip())
        assert header.messages([stray]) == [stray.strip()]


def test_a_few_stray_lines_in_the_sample_do_not_hide_the_header() -> None:
    lines, messages = _lines("log4j", n=200)
    mixed = lines[:]
    for i in range(0, 200, 25):  # 4 % continuation lines
        mixed.insert(i, "\tat com.foo.Bar.run(Bar.java:12)")
    header = HeaderFormat.detect(mixed)
    assert [header.split(line)[1] for line in lines] == messages


@pytest.mark.xfail(
    strict=True,
    reason="header.py: a column that holds a number in 90% of lines makes every column before "
    "it header too, even when those columns are words (no header here at all)",
)
def test_uniform_messages_without_header_are_not_cut() -> None:
    lines = [f"job {i} finished in {3 * i} ms" for i in range(40)]
    header = HeaderFormat.detect(lines)
    assert header.messages(lines) == lines


def test_line_and_batch_paths_agree_on_surrounding_whitespace() -> None:
    lines, _ = _lines("syslog")
    header = HeaderFormat.detect(lines)
    stray = "   continuation line  "
    assert header.split(stray)[1] == header.messages([stray])[0]


_TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from(list(" []:|-\t")),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_TEXT, max_size=20), st.lists(_TEXT, min_size=1, max_size=5))
def test_detect_and_split_never_raise(sample: list[str], probes: list[str]) -> None:
    header = HeaderFormat.detect(sample)
    for line in sample + probes:
        fields, message = header.split(line)
        # The message is the end of the line: a header is only ever cut from the front.
        assert line.strip().endswith(message)
        if fields:
            assert line.startswith(fields["header"])
    assert len(header.messages(sample + probes)) == len(sample + probes)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["syslog", "log4j", "apache", "pipe"]), st.integers(0, 10_000))
def test_detect_on_generated_formats(fmt: str, seed: int) -> None:
    lines, messages = _lines(fmt, n=60, seed=seed)
    header = HeaderFormat.detect(lines)
    assert [header.split(line)[1] for line in lines] == messages
