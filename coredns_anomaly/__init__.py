"""coredns-anomaly: learned anomaly detection for CoreDNS.

Roles live in sibling folders mapped under this package (see docs/architecture.md):
``coredns_anomaly.exporter``, ``.training``, ``.rules``, ``.webhook``, ``.lab``, ``.loop``.
"""

__version__ = "0.1.0"
