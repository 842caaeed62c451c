"""The closed loop on one machine: lab CoreDNS -> exporter -> Prometheus + rules ->
Alertmanager -> webhook, all real processes on loopback (the README's demo, the end-to-end
test and the alert-delay benchmark)."""
