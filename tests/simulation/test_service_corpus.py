"""The generated service corpus: deterministic, labelled as NAB labels, and its labels true."""

from __future__ import annotations

import itertools
import math
import statistics

from learning.detectors import SelfhealDetector
from learning.nab import PROFILES, load_corpus, score_corpus, score_file
from learning.service_corpus import synthetic_files, write_corpus
from simulation.corpus import service_corpus, simulated_files


def test_the_same_seed_gives_the_same_corpus_and_another_a_different_one():
    a, b, c = synthetic_files(7), synthetic_files(7), synthetic_files(8)
    assert [(f.name, f.values, f.windows) for f in a] == [(f.name, f.values, f.windows)
                                                           for f in b]
    assert [f.values for f in a] != [f.values for f in c]


def test_it_has_the_kinds_of_series_services_have():
    files = synthetic_files()
    kinds = {f.name.split("/")[0] for f in files}
    assert kinds == {"hourly_crash_rate", "hourly_api_latency", "hourly_purchases",
                     "minutely_ingress", "minutely_db_requests", "minutely_unavailable"}
    hourly = [f for f in files if f.name.startswith("hourly")]
    assert {len(f.values) for f in hourly} <= {720, 1440}  # 30 or 60 days
    assert all((f.timestamps[1] - f.timestamps[0]).total_seconds() == 3600 for f in hourly)
    assert min(len(f.values) for f in files) < 1000 < max(len(f.values) for f in files)
    assert any(not f.windows for f in files)  # quiet series: only false alarms to make
    # an anomaly in the first quarter of a series, as services have them
    assert any(f.windows and f.windows[0][1] < len(f.values) / 3 for f in files)
    unavailable = [f for f in files if "unavailable" in f.name]
    assert all(statistics.median(f.values) == 0 for f in unavailable)  # mostly zero counts
    assert all(v == int(v) for f in unavailable for v in f.values)


def test_windows_follow_nabs_rule_and_never_fall_in_probation():
    for f in service_corpus().files:
        n = len(f.values)
        assert f.probation == min(math.floor(0.15 * n), 750)
        assert all(f.probation <= s <= e < n for s, e in f.windows)
        assert all(a[1] < b[0] for a, b in itertools.pairwise(f.windows))  # no overlaps


def test_a_simulated_label_is_where_the_error_rate_rises():
    """Each simulated window holds its fault's start: the error rate after the window's
    middle is above what it was in the quiet hour before."""
    files = [f for f in simulated_files(seeds=(1,)) if f.windows]
    assert len(files) >= 8
    for f in files:
        s, e = f.windows[0]
        start = (s + e + 1) // 2
        before = statistics.mean(f.values[f.probation:s])
        after = statistics.mean(f.values[start:e + 1])
        assert after > before + 0.05, f.name


def test_written_in_nabs_layout_it_loads_back_the_same(tmp_path):
    corpus = service_corpus(simulated=False)
    back = load_corpus(write_corpus(corpus, tmp_path))
    by_name = {f.name: f for f in back.files}
    for f in corpus.files:
        g = by_name[f.name]
        assert (g.values, g.windows, g.probation, g.timestamps) == (
            f.values, f.windows, f.probation, f.timestamps)


def test_selfheal_beats_never_detecting_on_it():
    """A sanity check on corpus and scorer together, not a benchmark (that is make bench)."""
    corpus = service_corpus(simulated=False)
    scores = [score_file(f, SelfhealDetector) for f in corpus.files[::4]]
    sub = type(corpus)(corpus.files[::4])
    assert score_corpus(sub, scores, PROFILES[0])[0] > 20
