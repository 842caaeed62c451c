"""An engineer's judging, done through a running webhook over HTTP, as the feedback loop's test
and benchmark need it: Alertmanager delivers each alert (bearer token), the engineer opens the
alerts page and submits the verdict form (basic auth, the page's CSRF token), and the label
file is what `GET /labels` exports, the file `coredns-anomaly train --labels` reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import requests

from . import webhook_server
from .deliveries import alert, payload

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def rfc3339(t: float) -> str:
    """Unix seconds as Alertmanager writes times."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Judged:
    """One alarm an engineer judged: its instance, when it started and ended, the verdict."""

    instance: str
    start: float
    end: float
    verdict: str = "false_alarm"


def judge_and_export(
    url: str, token: str, basic: tuple[str, str], judged: list[Judged], timeout: float = 10
) -> str:
    """Deliver, judge and export: returns the label file `GET /labels` answers with.

    Raises RuntimeError naming the step and the server's answer when any step fails, so a
    broken loop is told apart from a model that did not learn.
    """
    session = requests.Session()
    for k, j in enumerate(judged):
        fp = f"judged{k}"
        body = payload(
            alert(
                fp, status="resolved", starts_at=rfc3339(j.start), ends_at=rfc3339(j.end),
                instance=j.instance,
                annotations={"score": "1.8", "anomaly_type": "unknown"},
            ),
            group_key=f"judged:{k}",
        )  # fmt: skip
        r = session.post(
            f"{url}/webhook", json=body, headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )  # fmt: skip
        _check(r, 200, "Alertmanager delivery")
        page = session.get(f"{url}/alerts", params={"since": "all"}, auth=basic, timeout=timeout)
        _check(page, 200, "the alerts page")
        csrf = CSRF.search(page.text)
        if csrf is None:
            raise RuntimeError("the alerts page has no verdict form (no csrf_token)")
        r = session.post(
            f"{url}/alerts/verdict",
            data={"csrf_token": csrf.group(1), "fingerprint": fp,
                  "starts_at": rfc3339(j.start), "verdict": j.verdict},
            auth=basic, allow_redirects=False, timeout=timeout,
        )  # fmt: skip
        _check(r, 303, f"the verdict on {fp}")
    r = session.get(f"{url}/labels", auth=basic, timeout=timeout)
    _check(r, 200, "GET /labels")
    return r.text


def judge_on_a_new_server(
    workdir: Path, judged: list[Judged], basic: tuple[str, str] = ("engineer", "judge-password")
) -> str:
    """`judge_and_export` on a webhook of its own: gunicorn with basic auth on loopback, a
    fresh store under `workdir`, stopped afterwards whatever happens."""
    server = webhook_server.start_server(
        workdir, env={
            "COREDNS_ANOMALY_WEBHOOK_BASIC_AUTH_USERNAME": basic[0],
            "COREDNS_ANOMALY_WEBHOOK_BASIC_AUTH_PASSWORD": basic[1],
        },
    )  # fmt: skip
    try:
        return judge_and_export(server.url, webhook_server.TOKEN, basic, judged)
    finally:
        server.stop()


def _check(r: requests.Response, status: int, step: str) -> None:
    if r.status_code != status:
        raise RuntimeError(f"{step}: HTTP {r.status_code} (expected {status}): {r.text[:300]}")
