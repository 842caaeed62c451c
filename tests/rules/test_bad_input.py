"""Bad input gives a clear error (exit 2) and leaves every existing output untouched."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from coredns_anomaly.rules.model import load_model_facts

ROOT = Path(__file__).resolve().parents[2]
THRESHOLDS = ROOT / "rules" / "generated" / "classic" / "thresholds.json"


@pytest.fixture
def out(tmp_path) -> Path:
    """An output directory that already holds files: they must survive every failure."""
    d = tmp_path / "out"
    (d / "tests").mkdir(parents=True)
    (d / "coredns-anomaly.rules.yml").write_text("old rules\n")
    (d / "tests" / "coredns-anomaly.rules.test.yml").write_text("old tests\n")
    return d


def _untouched(d: Path) -> None:
    files = sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())
    assert files == ["coredns-anomaly.rules.yml", "tests/coredns-anomaly.rules.test.yml"]
    assert (d / "coredns-anomaly.rules.yml").read_text() == "old rules\n"


@pytest.mark.parametrize(
    "field",
    ["step_seconds", "window", "decision_debounce_steps", "decision__threshold",
     "evaluation__test__median_delay_steps", "anomaly_types__names", "feature_names",
     "model_kind", "sha256"],
)  # fmt: skip
def test_bundle_without_needed_metadata(cli, bundle, delete, out, field):
    code, err = cli("rules", "generate", "--model", bundle(**{field: delete}), "--out", out)
    assert code == 2
    assert f"lacks `{field.replace('__', '.')}`" in err and "re-export" in err
    _untouched(out)


@pytest.mark.parametrize(
    ("edit", "message"),
    [({"step_seconds": 0}, "step_seconds 0.0 is not positive"),
     ({"decision__threshold": -1}, "decision.threshold -1.0 is not positive"),
     ({"window": "eight"}, "wrong type"),
     ({"sha256": "abc"}, "sha256 is not a 64-digit")],
)  # fmt: skip
def test_bundle_with_bad_values(cli, bundle, out, edit, message):
    code, err = cli("rules", "generate", "--model", bundle(**edit), "--out", out)
    assert code == 2 and message in err
    _untouched(out)


def test_no_bundle_at_all(cli, tmp_path, out):
    code, err = cli("rules", "generate", "--model", tmp_path / "nowhere", "--out", out)
    assert code == 2 and "nowhere not found: --model takes a bundle directory" in err
    _untouched(out)


def test_unknown_option_is_an_argparse_error(cli, out):
    code, err = cli("rules", "generate", "--model", ROOT / "models" / "default", "--out", out, "--jobb", "x")  # fmt: skip
    assert code == 2 and "unrecognized arguments: --jobb" in err
    # no abbreviations: a typo must not silently pick a neighbouring flag
    code, err = cli("rules", "classic", "--thresholds", THRESHOLDS, "--out", out, "--legacy")
    assert code == 2 and "unrecognized arguments: --legacy" in err
    _untouched(out)


@pytest.mark.parametrize("score", ["1", "0.5", "nan"])
def test_critical_score_must_be_above_warning(cli, out, score):
    code, err = cli("rules", "generate", "--model", ROOT / "models" / "default", "--out", out, "--critical-score", score)  # fmt: skip
    assert code == 2 and "--critical-score must be > 1" in err
    _untouched(out)


def test_critical_score_the_model_can_never_reach(cli, out, bundle):
    # a siamese score is bounded: it peaks at 1 / threshold
    siamese = bundle(model_kind="siamese", decision__threshold=0.5)
    m = load_model_facts(siamese)
    above = f"{m.max_score + 0.1:.3f}"
    code, err = cli("rules", "generate", "--model", siamese, "--out", out, "--critical-score", above)  # fmt: skip
    assert code == 2 and "can never fire" in err and f"{m.max_score:.3f}" in err
    _untouched(out)


def test_bad_thresholds_file(cli, tmp_path, out):
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"window": "1m", "signals": {}}))
    code, err = cli("rules", "classic", "--thresholds", bad, "--out", out)
    assert code == 2 and "lacks `for`" in err
    doc = json.loads(THRESHOLDS.read_text())
    doc["signals"]["made_up"] = {"threshold": 1}
    bad.write_text(json.dumps(doc))
    code, err = cli("rules", "classic", "--thresholds", bad, "--out", out)
    assert code == 2 and "unknown signals ['made_up']" in err
    bad.write_text("{not json")
    code, err = cli("rules", "classic", "--thresholds", bad, "--out", out)
    assert code == 2 and "not valid JSON" in err
    _untouched(out)


@pytest.mark.parametrize(
    "moved",
    [["--evaluate"], ["--dataset", "data/lab-v1"], ["--rate-window", "2m"], ["--model", "m"]],
)
def test_learning_flags_name_the_training_command(cli, out, moved):
    """Learning moved to training: the old flags say where, and nothing is written."""
    code, err = cli("rules", "classic", "--thresholds", THRESHOLDS, "--out", out, *moved)
    assert code == 2 and f"{moved[0]}: learning thresholds is training's" in err
    assert "coredns-anomaly thresholds learn --dataset DIR" in err
    _untouched(out)


def test_classic_needs_thresholds(cli, out):
    code, err = cli("rules", "classic", "--out", out)
    assert code == 2 and "--thresholds is required" in err
    assert "coredns-anomaly thresholds learn" in err
    _untouched(out)
