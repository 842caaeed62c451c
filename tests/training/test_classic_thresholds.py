"""Classic thresholds learned by training (`coredns-anomaly thresholds learn`), rendered by the
rules generator (`rules classic --thresholds`), scored on the test split (`thresholds
evaluate`): relearning from the shipped datasets reproduces the committed files (integration,
~3 min), and bad input is refused before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from coredns_anomaly.cli import main
from coredns_anomaly.training.baselines.thresholds import after_anomaly, split_bounds, threshold
from coredns_anomaly.training.series import Series, time_split

ROOT = Path(__file__).resolve().parents[2]
CLASSIC = ROOT / "rules" / "generated" / "classic"


def cli(capsys, *args) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    return code, capsys.readouterr().err


def test_split_bounds_match_the_models_split():
    for n in (10, 1040, 1041):
        labels = np.full(n, "normal", object)
        labels[int(n * 0.5) : int(n * 0.6)] = "query_flood"  # across the first boundary
        s = Series("x", np.arange(n, dtype=float), np.zeros((n, 1)), labels)
        sp = time_split([s])
        assert not (sp.train[0].labels[-1] == sp.val[0].labels[0] == "query_flood")
        assert split_bounds(labels) == (
            len(sp.train[0].times),
            len(sp.train[0].times) + len(sp.val[0].times),
        )


def test_threshold_is_a_high_quantile_plus_margin():
    v = np.concatenate([np.zeros(990), np.linspace(0.1, 1.0, 10)])
    t = threshold(v)
    assert np.quantile(v, 0.999) < t < 1.0 + 0.11


def test_steps_whose_rate_window_reaches_into_an_episode_are_not_normal():
    class DS:
        def anomalies(self):
            return pd.DataFrame(
                {"instance": ["a", "b"], "start": [10.0, 0.0], "end": [20.0, 100.0]}
            )

    t = np.arange(0, 100, 2.0)
    tainted = after_anomaly(DS(), "a", t, 62)
    assert (
        not tainted[t < 10].any()
        and tainted[(t >= 10) & (t < 82)].all()
        and not tainted[t >= 82].any()
    )


def test_dataset_too_small_to_learn_from(capsys, tmp_path):
    """Five minutes of lab-v1: refused before any Prometheus starts, nothing written."""
    from coredns_anomaly.training import dataset as ds_mod

    ds = ds_mod.load(ROOT / "data" / "lab-v1")
    t0 = float(ds.samples["timestamp"].min())
    small = ds_mod.Dataset(
        ds.samples[ds.samples["timestamp"] < t0 + 300].reset_index(drop=True),
        ds.labels[ds.labels["start"] < t0 + 300].reset_index(drop=True),
        ds.meta,
    )
    path = ds_mod.write(small, tmp_path / "small")
    code, err = cli(capsys, "thresholds", "learn", "--dataset", path, "--out", tmp_path / "out")
    assert code == 2
    assert "minutes of normal traffic in the train part (first 55%" in err
    assert "need at least 10" in err
    assert not (tmp_path / "out").exists()


def test_missing_dataset(capsys, tmp_path):
    code, err = cli(capsys, "thresholds", "learn", "--dataset", tmp_path / "nope", "--out", tmp_path / "out")  # fmt: skip
    assert code == 2 and "nope" in err
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_a_missing_rule_file(capsys, tmp_path):
    code, err = cli(
        capsys, "thresholds", "evaluate", "--dataset", ROOT / "data" / "lab-v1",
        "--classic", tmp_path / "nope.yml", "--out", tmp_path / "out",
    )  # fmt: skip
    assert code == 2 and "--classic" in err and "nope.yml" in err
    assert not (tmp_path / "out").exists()


# the datasets models/default was trained on (Makefile: TRAIN_2S), as `make rules` passes them
TRAINING_DATASETS = [
    str(p) for p in json.loads((ROOT / "docs" / "results" / "results.json").read_text())["datasets"]
]


@pytest.mark.integration
def test_relearned_thresholds_and_evaluation_match_the_committed(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # dataset paths are recorded as given, as `make rules` gives them
    datasets = [a for d in TRAINING_DATASETS for a in ("--dataset", d)]
    code, err = cli(capsys, "thresholds", "learn", *datasets, "--out", tmp_path)
    assert code == 0, err
    fresh = json.loads((tmp_path / "thresholds.json").read_text())
    committed = json.loads((CLASSIC / "thresholds.json").read_text())
    assert fresh == committed, "thresholds.json is stale: run `make rules`"
    assert (tmp_path / "thresholds.json").read_text() == (CLASSIC / "thresholds.json").read_text()
    assert fresh["normal_train_minutes"] >= 10
    code, err = cli(capsys, "rules", "classic", "--thresholds", tmp_path / "thresholds.json", "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    rules = tmp_path / "coredns-classic.rules.yml"
    code, err = cli(capsys, "thresholds", "evaluate", *datasets, "--classic", rules, "--out", tmp_path)  # fmt: skip
    assert code == 0, err
    for f in ("coredns-classic.rules.yml", "evaluation.json"):
        assert (tmp_path / f).read_text() == (CLASSIC / f).read_text(), f"{f} is stale: make rules"
    ev = json.loads((tmp_path / "evaluation.json").read_text())
    classic, mixin = ev["classic"], ev["coredns_mixin"]
    # same windows as the models: the test split of both datasets, as `train` scored it
    model = json.loads((ROOT / "docs" / "results" / "results.json").read_text())
    model = model["models"][model["chosen"]]
    assert classic["normal_hours"] == mixin["normal_hours"]
    assert classic["normal_hours"] == pytest.approx(model["normal_hours"], abs=0.01)
    episodes = sum(c["episodes"] for c in classic["per_class"].values())
    assert episodes == sum(c["episodes"] for c in model["per_class"].values()) > 20
    # learned thresholds catch what the mixin's 10-minute holds miss
    # (0.79 on the lab and environment recordings, 1.0 on the lab's alone; the mixin 0.04)
    assert classic["episode_recall"] > 0.75 > 0.2 > mixin["episode_recall"]
    assert classic["pointwise"]["f1"] > mixin["pointwise"]["f1"]
