"""`coredns-anomaly train` end to end on the shipped dataset (quick search), and the bundle."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from coredns_anomaly.cli import main as cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_train_writes_bundle_report_and_plots(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    rc = cli(
        [
            "train", "--quick", "--epochs", "6", "--dataset", "data/lab-v1",
            "--out", str(tmp_path / "bundle"), "--report", str(tmp_path / "docs"),
            "--threshold-rule", "latent_min_known_anomaly",
        ]
    )  # fmt: skip
    assert rc == 0
    meta = json.loads((tmp_path / "bundle" / "model.json").read_text())
    flat = (tmp_path / "bundle" / "model.tflite").read_bytes()
    assert meta["sha256"] == hashlib.sha256(flat).hexdigest()
    assert meta["export_check"]["max_abs_diff"]["batch_resized"] <= 1e-5
    assert (
        meta["feature_names"]
        and meta["window"] == 16
        and meta["step_seconds"] == pytest.approx(2.0, abs=0.1)
    )
    res = json.loads((tmp_path / "docs" / "results" / "results.json").read_text())
    # the proposal's latent rule, picked by name, is the exported autoencoder's decision
    assert res["chosen"] == "autoencoder"
    assert res["models"]["autoencoder"]["rule"] == "latent_min_known_anomaly"
    rule = res["models"]["autoencoder"]["threshold_rules"]["latent_min_known_anomaly"]
    assert res["models"]["autoencoder"]["config"]["threshold"] == rule["threshold"]
    assert set(res["models"]) == {"autoencoder", "classifier", "siamese", "ensemble"}
    assert {"pca", "coredns_mixin"} <= set(res["baselines"])
    assert set(res["held_out_classes"]) <= set(res["models"]["classifier"]["per_class"])
    # every kind was also scored on classes it never saw (leave one class out)
    for kind in ("autoencoder", "classifier", "siamese", "ensemble"):
        unseen = res["models"][kind]["unseen_class_recall_val"]
        assert unseen and all(0.0 <= r <= 1.0 for r in unseen.values())
    assert {"pca", "pca_no_debounce"} <= set(res["baselines"])
    md = (tmp_path / "docs" / "results.md").read_text()
    assert "## Unseen-class recall" in md
    assert "| detector | precision | recall |" in md and "baseline: coredns_mixin" in md
    for png in ("training_curves", "pr_curves", "confusion_matrices", "score_timeline"):
        assert (tmp_path / "docs" / "results" / f"{png}.png").stat().st_size > 5000


def test_missing_dataset_is_a_clear_error(tmp_path, capsys):
    rc = cli(["train", "--dataset", str(tmp_path / "nope"), "--out", str(tmp_path / "b")])
    assert rc == 2
    assert "not a dataset directory" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--threshold-rule", "smallest"], "one of latent_min_known_anomaly"),
        (
            ["--threshold-rule", "p_half", "--export-kind", "autoencoder"],
            "a rule of the classifier, not of the --export-kind autoencoder",
        ),
        (["--only-kind", "autoencoder", "--export-kind", "ensemble"], "trains no ensemble"),
        (
            ["--only-kind", "classifier", "--threshold-rule", "latent_min_known_anomaly"],
            "a rule of the autoencoder, not of the --export-kind classifier",
        ),
    ],
)
def test_a_bad_rule_or_kind_is_refused_before_any_training(tmp_path, capsys, extra, says):
    rc = cli(
        ["train", "--dataset", str(ROOT / "data/lab-v1"), "--out", str(tmp_path / "b"), *extra]
    )
    assert rc == 2
    assert says in capsys.readouterr().err
    assert not (tmp_path / "b").exists()
