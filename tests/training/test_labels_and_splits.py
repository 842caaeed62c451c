"""How steps get labels and splits: a scrape measures the interval before it, and a split
boundary never cuts an episode."""

import numpy as np
import pytest

from coredns_anomaly.training.dataset import overlapping
from coredns_anomaly.training.series import NORMAL, Series, episodes, time_split


def test_a_scrape_belongs_to_the_episode_its_interval_overlaps():
    times = np.arange(0.0, 20.0, 2.0)  # scrapes every 2 s
    inside = overlapping(times, start=5.0, end=9.0, step=2.0)
    # 6 and 8 fall inside; 10 measured (8, 10], which overlaps [5, 9): still the episode.
    assert times[inside].tolist() == [6.0, 8.0, 10.0]
    # An episode ending exactly on a scrape leaves the next scrape clean.
    assert times[overlapping(times, 4.0, 8.0, 2.0)].tolist() == [4.0, 6.0, 8.0]


def test_split_boundaries_move_to_the_end_of_a_cut_episode():
    n = 200
    labels = np.full(n, NORMAL, object)
    labels[105:120] = "upstream_loss"  # int(200 * 0.55) = 110 falls inside
    labels[145:160] = "query_flood"  # int(200 * 0.75) = 150 falls inside
    s = Series("x", np.arange(n, dtype=float), np.zeros((n, 1)), labels)
    sp = time_split([s])
    assert len(sp.train[0].times) == 120
    assert len(sp.train[0].times) + len(sp.val[0].times) == 160
    assert sp.val[0].labels[0] == sp.test[0].labels[0] == NORMAL, "no split starts mid-episode"
    assert [c for c, _, _ in episodes(sp.train[0].labels, sp.train[0].times)] == ["upstream_loss"]
    assert sum(len(p.times) for p in (sp.train[0], sp.val[0], sp.test[0])) == n


def test_split_of_an_all_normal_series_is_the_plain_fraction():
    n = 1000
    s = Series("x", np.arange(n, dtype=float), np.zeros((n, 1)), np.full(n, NORMAL, object))
    sp = time_split([s])
    assert (len(sp.train[0].times), len(sp.val[0].times)) == (550, 200)


def _labels(*rows):
    """Dataset labels from (instance, class, start, end, anomaly, source)."""
    import pandas as pd

    from coredns_anomaly.training.dataset import LABEL_COLUMNS

    return pd.DataFrame(
        [
            {"instance": i, "class": c, "start": a, "end": b, "intensity": np.nan,
             "anomaly": an, "params": "{}", "source": src}
            for i, c, a, b, an, src in rows
        ],
        columns=list(LABEL_COLUMNS),
    )  # fmt: skip


def test_label_precedence_verified_over_false_alarm_over_weak_in_any_order():
    """An always-firing alert of some other rule (weak) never outvotes an engineer's
    false-alarm verdict, and a verified anomaly outvotes both, whatever the file order."""
    from coredns_anomaly.training.dataset import Dataset, label_sources_at

    times = np.arange(0.0, 100.0, 2.0)
    rows = [
        ("a", "Watchdog", 0.0, 100.0, True, "weak"),
        ("a", "false_alarm", 20.0, 60.0, False, "verified"),
        ("a", "upstream_loss", 40.0, 50.0, True, "verified"),
        ("a", "burst", 70.0, 80.0, False, "lab"),  # a benign lab event says nothing
    ]
    for order in (rows, rows[::-1]):
        ds = Dataset(None, _labels(*order), {"step_seconds": 2.0})
        lab = ds.label_at("a", times)
        src = label_sources_at(ds, "a", times)
        assert lab[times == 10.0][0] == "Watchdog" and src[times == 10.0][0] == "weak"
        assert lab[times == 30.0][0] == NORMAL and src[times == 30.0][0] == "false_alarm"
        assert lab[times == 44.0][0] == "upstream_loss" and src[times == 44.0][0] == "verified"
        assert lab[times == 76.0][0] == "Watchdog"  # the benign event overrides nothing


def test_weak_labels_about_the_whole_fleet_are_dropped_on_merge(tmp_path, caplog):
    from datetime import datetime, timezone

    from coredns_anomaly.training.dataset import Dataset, empty_labels
    from coredns_anomaly.training.labels_merge import merge_label_files
    from coredns_anomaly.webhook.labels import LabelRecord, write_label_file

    t = datetime(2026, 12, 1, tzinfo=timezone.utc)
    recs = [
        LabelRecord("*", t, t, "anomaly", source="weak", alertname="CoreDNSErrorsHigh"),
        LabelRecord("a", t, t, "anomaly", source="weak", anomaly_class="CoreDNSDown"),
    ]
    f = tmp_path / "labels.csv"
    write_label_file(f, recs)
    ds = merge_label_files(Dataset(None, empty_labels(), {"step_seconds": 2.0}), [f])
    assert ds.labels["instance"].tolist() == ["a"]
    assert ds.labels["class"].tolist() == ["CoreDNSDown"]
    assert "name no instance" in caplog.text


@pytest.mark.parametrize("kind", ["classifier", "siamese"])
def test_labels_of_one_class_skip_the_unseen_class_check_instead_of_crashing(kind):
    """`train --labels` with the weak labels of a single rule: leaving that class out leaves a
    supervised model nothing anomalous to learn (the siamese model raised ValueError after the
    whole search). The check is skipped, and says why."""
    from types import SimpleNamespace

    from coredns_anomaly.training.pipeline import Candidate, unseen_class_recall

    cand = Candidate(kind, 16, 16, {"per_class": {"CoreDNSErrorsHigh": {}}}, 0.0)
    said = []
    judge = SimpleNamespace(val_novel=(), held_out=())
    out = unseen_class_recall(cand, None, judge, 1, 8, 0, said.append)
    assert out == {} and cand.unseen == {} and cand.unseen_mean is None
    assert "skipped" in said[0] and "CoreDNSErrorsHigh" in said[0]


def test_engineers_labels_in_the_newest_data_still_train():
    """Verdicts given on the newest part of a collected range (where people looked) go to
    training, three episodes of four, the fourth validates; none is left to the test split."""
    n = 1000
    labels = np.full(n, NORMAL, object)
    src = np.full(n, "", object)
    runs = [(600, 620), (700, 720), (800, 820), (900, 920), (950, 960)]
    for x, y in runs:
        src[x:y] = "false_alarm"
    labels[950:960] = "upstream_loss"
    src[950:960] = "verified"
    s = Series("x", np.arange(n, dtype=float), np.zeros((n, 1)), labels, ("f",), src)
    sp = time_split([s], margin=10)

    def steps(parts):
        return set(np.concatenate([p.times for p in parts]).astype(int).tolist())

    tr, va, te = steps(sp.train), steps(sp.val), steps(sp.test)
    assert tr.isdisjoint(va) and tr.isdisjoint(te) and va.isdisjoint(te)
    assert len(tr | va | te) == n  # every step once
    assert set(range(590, 620)) <= tr and set(range(690, 720)) <= tr  # with their margin
    assert set(range(800, 820)) <= tr and set(range(890, 920)) <= va  # the 4th validates
    assert set(range(940, 960)) <= tr
    assert not any(src[t] for t in te), "no engineer's label is left to the test split"
