"""The committed rules, manifest and runbooks are what the generators make today."""

from __future__ import annotations

import filecmp
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / "rules" / "generated"
HINT = "is stale: run `make rules` (see docs/rules.md) and commit the result"


def _same_tree(fresh: Path, committed: Path, skip: tuple[str, ...] = ()) -> None:
    made = sorted(p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file())
    assert made, f"nothing generated in {fresh}"
    for rel in made:
        if rel.name in skip:
            continue
        assert (committed / rel).is_file(), f"{committed / rel} is missing: run `make rules`"
        assert filecmp.cmp(fresh / rel, committed / rel, shallow=False), f"{committed / rel} {HINT}"


def test_model_rules_are_current(cli, tmp_path):
    code, err = cli("rules", "generate", "--model", ROOT / "models" / "default", "--out", tmp_path)
    assert code == 0, err
    _same_tree(tmp_path, GENERATED, skip=())
    assert (tmp_path / "prometheusrule.yaml").read_text() == (
        GENERATED / "prometheusrule.yaml"
    ).read_text()


def test_kubernetes_rules_and_manifest_are_current(cli, tmp_path):
    manifest = tmp_path / "manifest.yaml"
    code, err = cli(
        "rules", "generate", "--model", ROOT / "models" / "default", "--out", tmp_path / "k",
        "--job", "coredns-anomaly-exporter", "--coredns-job", "kube-dns", "--manifest", manifest,
    )  # fmt: skip
    assert code == 0, err
    _same_tree(tmp_path / "k", GENERATED / "kubernetes")
    deployed = ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml"
    assert manifest.read_text() == deployed.read_text(), f"{deployed} {HINT}"


def test_classic_rules_are_current(cli, tmp_path):
    """Re-rendered from the committed thresholds (relearning needs Prometheus: integration)."""
    thresholds = GENERATED / "classic" / "thresholds.json"
    for extra in ((), ("--legacy-names",)):
        code, err = cli("rules", "classic", "--thresholds", thresholds, "--out", tmp_path, *extra)
        assert code == 0, err
    _same_tree(tmp_path, GENERATED / "classic")


def test_runbooks_are_current(cli, tmp_path):
    code, err = cli("rules", "runbooks", "--out", tmp_path / "runbooks.md")
    assert code == 0, err
    committed = ROOT / "docs" / "runbooks.md"
    assert (tmp_path / "runbooks.md").read_text() == committed.read_text(), f"{committed} {HINT}"


def test_runbooks_have_an_entry_per_generated_alert():
    import yaml

    text = (ROOT / "docs" / "runbooks.md").read_text()
    alerts = {
        r["alert"]
        for f in GENERATED.rglob("*.rules.yml")
        for g in yaml.safe_load(f.read_text())["groups"]
        for r in g["rules"]
    }
    assert len(alerts) >= 15
    for a in alerts:
        assert f"\n### {a}\n" in text, f"docs/runbooks.md has no entry for {a}"
