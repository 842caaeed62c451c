"""How steps get labels and splits: a scrape measures the interval before it, and a split
boundary never cuts an episode."""

import numpy as np

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
