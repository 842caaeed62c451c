"""The lab: real CoreDNS under realistic cluster-DNS traffic with labelled faults, recorded as
datasets (`coredns-anomaly lab record`), and the processes the demo, tests and benchmarks run
on loopback: children that die with us (`processes.py`), Prometheus (`prometheus.py`), the
webhook under gunicorn with Alertmanager-shaped load and faults (`webhook_server.py`,
`deliveries.py`, `webhook_faults.py`). No TensorFlow here.
"""
