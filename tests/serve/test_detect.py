"""``selfheal detect``: one scored row per input row, in order; bad input named, nothing written."""

from __future__ import annotations

import csv

import pytest

from serve.cli import main


def write(tmp_path, text, name="in.csv"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_every_row_is_scored_in_order_with_its_own_text(tmp_path):
    rows = [f"2026-01-01 00:{i // 12:02d}:{(i % 12) * 5:02d},{100 + (i % 7)}" for i in range(600)]
    rows.append("2026-01-01 00:50:00,900")
    src = write(tmp_path, "timestamp,value\n" + "\n".join(rows) + "\n")
    out = tmp_path / "out.csv"
    assert main(["detect", str(src), "-o", str(out)]) == 0
    got = list(csv.reader(out.open()))
    assert got[0] == ["timestamp", "value", "anomaly_score"]
    assert [r[:2] for r in got[1:]] == [r.split(",") for r in rows]
    scores = [float(r[2]) for r in got[1:]]
    assert all(0 <= s <= 1 for s in scores)
    assert scores[-1] == max(scores) and scores[-1] > 0.6  # the spike at the end


def test_scores_use_only_the_past_rows(tmp_path):
    """Two days of half-hourly values (the daily season is fitted), then the same file with
    a third day appended: the first two days' scores are unchanged to the last digit."""
    import math
    import random
    from datetime import UTC, datetime, timedelta

    rng = random.Random(7)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [f"{t0 + timedelta(minutes=30 * i):%Y-%m-%d %H:%M:%S},"
            f"{50 + 20 * math.sin(2 * math.pi * i / 48) + rng.gauss(0, 1):.4f}"
            for i in range(48 * 6)]
    short, long_ = write(tmp_path, "timestamp,value\n" + "\n".join(rows[:200]) + "\n", "a.csv"), \
        write(tmp_path, "timestamp,value\n" + "\n".join(rows) + "\n", "b.csv")
    assert main(["detect", str(short), "-o", str(tmp_path / "a.out")]) == 0
    assert main(["detect", str(long_), "-o", str(tmp_path / "b.out")]) == 0
    a = (tmp_path / "a.out").read_text().splitlines()
    b = (tmp_path / "b.out").read_text().splitlines()
    assert len(a) == 201 and a == b[:201]
    assert len({line.split(",")[2] for line in b[150:]}) > 10  # the scores do vary


def test_standard_output_and_the_baselines(tmp_path, capsys):
    src = write(tmp_path, "timestamp,value\n2026-01-01 00:00:00,1\n2026-01-01 00:05:00,2\n")
    for detector in ("selfheal", "static_threshold", "rolling_zscore"):
        assert main(["detect", str(src), "--detector", detector]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0] == "timestamp,value,anomaly_score" and len(lines) == 3


@pytest.mark.parametrize("text,line,field", [
    ("time,value\n2026-01-01 00:00:00,1\n", 1, "header"),
    ("timestamp,value\n2026-01-01 00:00:00,1,2\n", 2, "row"),
    ("timestamp,value\nyesterday,1\n", 2, "timestamp"),
    ("timestamp,value\n2026-01-01 00:00:00,1\n2026-01-01 00:05:00,\n", 3, "value"),
    ("timestamp,value\n2026-01-01 00:00:00,abc\n", 2, "value"),
    ("timestamp,value\n2026-01-01 00:00:00,inf\n", 2, "value"),
    ("", 1, "header"),
])
def test_bad_input_is_named_and_nothing_is_written(tmp_path, capsys, text, line, field):
    src = write(tmp_path, text)
    out = tmp_path / "out.csv"
    out.write_text("previous results\n")
    assert main(["detect", str(src), "-o", str(out)]) == 2
    assert f"{src}:{line}: {field}:" in capsys.readouterr().err
    assert out.read_text() == "previous results\n"  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "out.csv"]


def test_a_missing_file_is_named(tmp_path, capsys):
    assert main(["detect", str(tmp_path / "absent.csv")]) == 2
    assert "cannot be read" in capsys.readouterr().err


def test_a_range_hint_is_taken_and_a_bad_one_named(tmp_path, capsys):
    rows = [f"2026-01-01 00:{i // 12:02d}:{(i % 12) * 5:02d},500" for i in range(600)]
    rows.append("2026-01-01 00:50:00,500.01")
    src = write(tmp_path, "timestamp,value\n" + "\n".join(rows) + "\n")
    hinted, blind = tmp_path / "hinted.csv", tmp_path / "blind.csv"
    assert main(["detect", str(src), "-o", str(hinted), "--range", "0", "1000"]) == 0
    assert main(["detect", str(src), "-o", str(blind)]) == 0
    last = [float(list(csv.reader(p.open()))[-1][2]) for p in (hinted, blind)]
    assert last[0] < 0.1 < last[1]  # below the hint's resolution, the wobble is no news
    # a negative bound written with an exponent is a value, not an option (argparse < 3.13)
    wide = tmp_path / "wide.csv"
    assert main(["detect", str(src), "-o", str(wide), "--range", "-1e3", "1e3"]) == 0
    assert len(list(csv.reader(wide.open()))) == len(rows) + 1
    capsys.readouterr()
    for args, says in ((["--range", "5", "1"], "--range: MIN MAX: must be two finite"),
                       (["--range", "0", "1", "--detector", "rolling_zscore"],
                        "--range: rolling_zscore: takes no range hint")):
        out = tmp_path / "never.csv"
        assert main(["detect", str(src), "-o", str(out), *args]) == 2
        err = capsys.readouterr().err
        assert says in err and len(err.strip().splitlines()) == 1 and not out.exists()
