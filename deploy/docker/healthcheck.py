"""Docker HEALTHCHECK for the coredns-anomaly image (slim images have no curl).

One image runs either role, so it probes each port in COREDNS_ANOMALY_HEALTHCHECK_PORTS
(default "9096 9095": exporter, webhook) and is healthy if any answers /-/healthy with 200.
COREDNS_ANOMALY_HEALTHCHECK_URL overrides with one exact URL (e.g. after --listen :8080).
With TLS on (--web-config-file), probe https: by default on loopback (127.0.0.1), where the
container talks to itself, the certificate is not verified (it names the Service, not
127.0.0.1); any other host is verified. COREDNS_ANOMALY_HEALTHCHECK_SCHEME=https switches the
per-port probes to https. Kubernetes ignores HEALTHCHECK and uses the probes in deploy/kubernetes.
"""

import os
import ssl
import sys
import urllib.parse
import urllib.request


def healthy(url: str) -> bool:
    ctx = None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname in ("127.0.0.1", "::1", "localhost"):
        ctx = ssl._create_unverified_context()  # the container probing itself on loopback
    try:
        with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:
            return resp.status == 200
    except OSError:
        return False


def main() -> int:
    url = os.environ.get("COREDNS_ANOMALY_HEALTHCHECK_URL")
    ports = os.environ.get("COREDNS_ANOMALY_HEALTHCHECK_PORTS", "9096 9095").split()
    scheme = os.environ.get("COREDNS_ANOMALY_HEALTHCHECK_SCHEME", "http")
    urls = [url] if url else [f"{scheme}://127.0.0.1:{p}/-/healthy" for p in ports]
    return 0 if any(healthy(u) for u in urls) else 1


if __name__ == "__main__":
    sys.exit(main())
