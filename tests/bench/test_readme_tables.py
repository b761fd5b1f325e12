"""bench/readme_tables.py: the README's bench block says only what the results JSON holds."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import readme_tables  # noqa: E402


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the committed results that the renderer reads instead."""
    folder = tmp_path / "results"
    shutil.copytree(BENCH / "results", folder)
    monkeypatch.setattr(readme_tables, "RESULTS", folder)
    return folder


def _change(folder: Path, name: str, **changes: Any) -> dict[str, Any]:
    path = folder / name
    doc = json.loads(path.read_text())
    doc.update(changes)
    path.write_text(json.dumps(doc))
    return doc  # type: ignore[no-any-return]


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_committed_results_render(results: Path) -> None:
    text = readme_tables.render()
    assert text.startswith(readme_tables.BEGIN) and text.endswith(readme_tables.END)


def test_verdicts_and_settings_come_from_the_json(results: Path) -> None:
    _change(results, "logspeed.json", meets_lines_per_s=True)
    _change(
        results,
        "ingest.json",
        duration_s=60.0,
        http_429_or_503=12345,
        samples_per_s=180000.0,
        rss_mib_first_minute=1000.0,
        rss_mib_last_minute=1500.0,
    )
    text = _flat(readme_tables.render())
    assert "not met yet" not in text.split("Target 1,000,000 lines/s")[1][:20]
    assert "Target 1,000,000 lines/s: met." in text
    assert "no answer 429" not in text and "12,345 answers 429 or 503" in text
    assert "RSS held" not in text and "RSS went +50 %" in text and "target is missed" in text
    assert "Over 10 minutes" not in text and "Over 1 minute relia" in text
    assert "36 % of what the senders offered" in text
    assert "checkpoints written" not in text

    _change(results, "logspeed.json", meets_lines_per_s=False)
    assert "Target 1,000,000 lines/s: not met yet." in _flat(readme_tables.render())


def test_stream_size_and_warm_up_are_read_from_streaming_json(results: Path) -> None:
    doc = json.loads((results / "streaming.json").read_text())
    row = doc["detectors"]["default"]
    doc["detectors"] = {"default": row}
    doc.pop("river")
    # A run from before the untimed warm-up (no points_per_series_untimed) timed warm-up too.
    row.pop("points_per_series_untimed", None)
    (results / "streaming.json").write_text(json.dumps(doc))
    assert "include warm-up" in _flat(readme_tables.streaming_text())
    row.update(series=200, points=20000, points_per_series_untimed=64)
    (results / "streaming.json").write_text(json.dumps(doc))
    text = _flat(readme_tables.render())
    assert "20,000 NAB points spread round-robin over 200 series" in text
    assert "first fed 64 points untimed" in text and "steady state" in text
    assert "river" not in readme_tables.streaming_table()


def test_a_river_block_from_another_run_is_refused(results: Path) -> None:
    doc = json.loads((results / "streaming.json").read_text())
    doc["river"]["steady_state"]["points_per_s"] *= 2  # river re-measured, default not
    (results / "streaming.json").write_text(json.dumps(doc))
    with pytest.raises(readme_tables.ResultsError, match="streaming.json: the river block"):
        readme_tables.render()


def test_rows_from_another_stream_are_refused(results: Path) -> None:
    doc = json.loads((results / "streaming.json").read_text())
    doc["detectors"]["cusum"]["series"] = 200
    (results / "streaming.json").write_text(json.dumps(doc))
    with pytest.raises(readme_tables.ResultsError, match="`cusum` was measured on another"):
        readme_tables.render()


def test_a_partial_loghub_run_is_refused(
    results: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads((results / "loghub.json").read_text())
    doc["systems"] = dict(list(doc["systems"].items())[:3])
    doc["all_systems"] = False
    (results / "loghub.json").write_text(json.dumps(doc))
    with pytest.raises(readme_tables.ResultsError, match="loghub.json: a run on 3 systems"):
        readme_tables.render()
    readme = results.parent / "README.md"
    readme.write_text(f"top\n{readme_tables.BEGIN}\nold\n{readme_tables.END}\n")
    monkeypatch.setattr(readme_tables, "ROOT", results.parent)
    assert readme_tables.main() == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bench/results/loghub.json" in err
    assert "old" in readme.read_text()  # untouched


def test_logspeed_row_says_how_many_cores_each_side_used(results: Path) -> None:
    d = json.loads((results / "logspeed.json").read_text())
    same, drain = d["parsers"]["relia_same_lines"], d["parsers"]["drain3"]
    table = readme_tables.logspeed_table()
    assert "cores used" in table.splitlines()[0]
    assert f"| {same['cores_used']:.2f} / {drain['cores_used']:.2f} |" in table
    assert f"{same['cores_used']:.2f} on Drain3's lines" in _flat(readme_tables.logspeed_text())


def test_scale_figures_say_which_code_measured_them(results: Path) -> None:
    text = _flat(readme_tables.scale_tables())
    assert "Measured on 2026-11-21 by the code of commit" in text
    _change(
        results,
        "scale.json",
        git_commit="abc1234",
        **{"class": "relia.detect.adaptive:Adaptive", "config": {"min_samples": 64}},
    )
    assert "by commit abc1234 (`default`: relia.detect.adaptive:Adaptive)" in _flat(
        readme_tables.scale_tables()
    )


def test_config_mismatches_name_the_files(results: Path) -> None:
    want = json.loads((results / "throughput.json").read_text())["detectors"]["default"]["config"]
    _change(results, "scale.json", config=want)
    assert "scale.json" not in readme_tables.config_mismatches()
    _change(results, "scale.json", config={**want, "min_samples": 1})
    assert "scale.json" in readme_tables.config_mismatches()
