"""Docker HEALTHCHECK for the coredns-anomaly image (slim images have no curl).

One image runs either role, so it probes each port in COREDNS_ANOMALY_HEALTHCHECK_PORTS
(default "9096 9095": exporter, webhook) and is healthy if any answers /-/healthy with 200.
COREDNS_ANOMALY_HEALTHCHECK_URL overrides with one exact URL (e.g. after --listen :8080).
Kubernetes ignores HEALTHCHECK and uses the probes in deploy/kubernetes.
"""

import os
import sys
import urllib.request


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


def main() -> int:
    url = os.environ.get("COREDNS_ANOMALY_HEALTHCHECK_URL")
    ports = os.environ.get("COREDNS_ANOMALY_HEALTHCHECK_PORTS", "9096 9095").split()
    urls = [url] if url else [f"http://127.0.0.1:{p}/-/healthy" for p in ports]
    return 0 if any(healthy(u) for u in urls) else 1


if __name__ == "__main__":
    sys.exit(main())
