"""The rules role: generated Prometheus alerting rules and their promtool tests."""
