"""deploy/kubernetes: every manifest parses and agrees with the image, the exporter and the
webhook (ports, probe paths, flags, volumes, secrets, labels)."""

from __future__ import annotations

import argparse
import re

import pytest
import yaml
from deploy_testlib import GENERATED, K8S, ROOT, container

from coredns_anomaly.cli import build_parser
from coredns_anomaly.webhook.config import ENV_PREFIX, Settings

EXPORTER_PORT, WEBHOOK_PORT = 9096, 9095
LABELS = {"app.kubernetes.io/name": "coredns-anomaly"}


def exporter_doc_flags() -> set[str]:
    """The flags docs/exporter.md fixes (its "Command line" block)."""
    text = (ROOT / "docs" / "exporter.md").read_text()
    block = re.search(r"## Command line.*?```\n(.*?)```", text, re.S).group(1)
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", block))


def subcommand_parser(name: str) -> argparse.ArgumentParser | None:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def parse_or_fail(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(args)
    except SystemExit:
        pytest.fail(f"the real parser rejects {args}")


def flag_value(args: list[str], flag: str) -> str:
    for a in args:
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    raise AssertionError(f"{flag} not in {args}")


def test_every_manifest_parses_with_identity(k8s_objects, k8s_files):
    assert k8s_files, "no manifests"
    for o in k8s_objects:
        assert isinstance(o.doc, dict), o.path
        assert o.doc.get("apiVersion") and o.doc.get("kind"), o.path
        assert o.doc.get("metadata", {}).get("name"), o.path
        # Namespace-agnostic: kubectl -n / a kustomize overlay decides.
        assert "namespace" not in o.doc["metadata"], f"{o.path}: hard-coded namespace"


def test_generated_prometheusrule_parses_if_present():
    path = K8S / "prometheusrule.yaml"
    if not path.exists():
        pytest.skip("prometheusrule.yaml not generated yet (rules generator)")
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert any(d["kind"] == "PrometheusRule" for d in docs)
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"]


def test_kustomization_lists_every_manifest_but_the_example(kustomization, k8s_files):
    resources = kustomization["resources"]
    assert "namespace" not in kustomization
    assert "prometheusrule.yaml" in resources
    for r in resources:
        assert (K8S / r).exists() or r in GENERATED, f"kustomization lists missing {r}"
    on_disk = {p.name for p in k8s_files} - {"webhook-secret.example.yaml"}
    assert on_disk <= set(resources), f"not in kustomization: {on_disk - set(resources)}"
    assert "webhook-secret.example.yaml" not in resources, "placeholder secrets must not ship"


def test_images_are_the_project_image_at_its_version(k8s, kustomization):
    version = re.search(r'(?m)^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text())[1]
    (img,) = kustomization["images"]
    assert img["name"] == "coredns-anomaly" and img["newTag"] == version
    for deploy in ("coredns-anomaly-exporter", "coredns-anomaly-webhook"):
        assert container(k8s, deploy)["image"] == f"coredns-anomaly:{version}"


@pytest.mark.parametrize(
    "name,port",
    [("coredns-anomaly-exporter", EXPORTER_PORT), ("coredns-anomaly-webhook", WEBHOOK_PORT)],
)
def test_deployment_ports_probes_service_and_monitor_agree(k8s, name, port):
    dep = k8s[("Deployment", name)]
    assert dep["spec"]["selector"]["matchLabels"].items() <= (
        dep["spec"]["template"]["metadata"]["labels"].items()
    )
    c = container(k8s, name)
    assert flag_value(c["args"], "--listen") == f"0.0.0.0:{port}"
    (cport,) = c["ports"]
    assert cport["containerPort"] == port
    assert c["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": cport["name"]}
    assert c["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": cport["name"]}

    svc = k8s[("Service", name)]
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    (sport,) = svc["spec"]["ports"]
    assert sport["port"] == port and sport["targetPort"] == cport["name"]

    mon = k8s[("ServiceMonitor", name)]
    assert mon["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    (ep,) = mon["spec"]["endpoints"]
    assert ep["port"] == sport["name"] and ep["path"] == "/metrics"
    if name.endswith("exporter"):
        # Else Prometheus overwrites the CoreDNS `instance` with the exporter's address.
        assert ep["honorLabels"] is True


@pytest.mark.parametrize("name", ["coredns-anomaly-exporter", "coredns-anomaly-webhook"])
def test_pods_are_locked_down_and_small(k8s, name):
    pod = k8s[("Deployment", name)]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's uid
    c = container(k8s, name)
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    res = c["resources"]
    assert res["requests"]["cpu"] and res["requests"]["memory"] and res["limits"]["memory"]
    # Read-only root: every mount names a volume of the pod, and /tmp is writable.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert set(mounts.values()) <= set(volumes)
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_exporter_args_use_documented_flags_and_shipped_files(k8s, dockerfile):
    c = container(k8s, "coredns-anomaly-exporter")
    args = c["args"]
    assert args[0] == "exporter"
    parser = subcommand_parser("exporter")
    if parser is not None:  # the exporter's own CLI
        parse_or_fail(parser, args[1:])
        flags = {s for a in parser._actions for s in a.option_strings}
    else:  # before the exporter registers its subcommand: the flags its doc fixes
        flags = exporter_doc_flags()
        for a in args[1:]:
            assert a.split("=", 1)[0] in flags, f"{a}: not a flag of docs/exporter.md"
    for env in c.get("env", []):
        names = {"COREDNS_ANOMALY_" + f[2:].upper().replace("-", "_") for f in flags}
        assert env["name"] in names

    # The model is the one the runtime image copies in.
    _, stages = dockerfile
    model_env = [e for e in stages["runtime"].all("ENV") if e.startswith("COREDNS_ANOMALY_MODEL=")]
    assert flag_value(args, "--model") == model_env[0].split("=", 1)[1]

    # The targets file is the ConfigMap's key, mounted as a directory (updates reach the pod).
    targets = flag_value(args, "--targets-file")
    pod = k8s[("Deployment", "coredns-anomaly-exporter")]["spec"]["template"]["spec"]
    (mount,) = [m for m in c["volumeMounts"] if targets.startswith(m["mountPath"] + "/")]
    assert "subPath" not in mount
    vol = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    cm = k8s[("ConfigMap", vol["configMap"]["name"])]
    key = targets[len(mount["mountPath"]) + 1 :]
    groups = yaml.safe_load(cm["data"][key])
    assert all(re.fullmatch(r"[^:/]+:\d+", t) for g in groups for t in g["targets"])


def test_webhook_args_parse_with_the_real_cli(k8s, tmp_path):
    c = container(k8s, "coredns-anomaly-webhook")
    args = c["args"]
    ns = parse_or_fail(build_parser(), args)
    assert ns.command == "webhook" and ns.webhook_command == "serve"
    assert not ns.allow_unauthenticated, "the shipped webhook must require credentials"
    for env in c.get("env", []):
        assert env["name"].removeprefix(ENV_PREFIX).lower() in Settings.__dataclass_fields__

    pod = k8s[("Deployment", "coredns-anomaly-webhook")]["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in c["volumeMounts"]}
    # The store lives on the PVC.
    db_dir = ns.db.rsplit("/", 1)[0]
    claim = mounts[db_dir]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in k8s
    # The credential files are keys of the Secret whose example ships.
    secret = k8s[("Secret", "coredns-anomaly-webhook")]
    for path in (ns.bearer_token_file, ns.basic_auth_password_file):
        d, f = path.rsplit("/", 1)
        vol = mounts[d]["secret"]
        assert vol["secretName"] == secret["metadata"]["name"]
        item = next(i for i in vol["items"] if i["path"] == f)
        assert item["key"] in secret["stringData"]
    # Single writer on a ReadWriteOnce volume.
    dep = k8s[("Deployment", "coredns-anomaly-webhook")]["spec"]
    assert dep["replicas"] == 1 and dep["strategy"]["type"] == "Recreate"


def test_alertmanagerconfig_uses_secret_credentials(k8s):
    amc = k8s[("AlertmanagerConfig", "coredns-anomaly-webhook")]["spec"]
    names = {r["name"] for r in amc["receivers"]}
    assert amc["route"]["receiver"] in names
    secret = k8s[("Secret", "coredns-anomaly-webhook")]
    (hook,) = amc["receivers"][0]["webhookConfigs"]
    assert hook["sendResolved"] is True
    refs = [hook["urlSecret"], hook["httpConfig"]["authorization"]["credentials"]]
    for ref in refs:
        assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["stringData"]
    url = secret["stringData"][hook["urlSecret"]["key"]]
    assert re.fullmatch(
        rf"http://coredns-anomaly-webhook\.[a-z0-9-]+\.svc:{WEBHOOK_PORT}/webhook", url
    )


def test_objects_carry_the_app_label(k8s_objects):
    for o in k8s_objects:
        assert LABELS.items() <= o.doc["metadata"].get("labels", {}).items(), o.path
