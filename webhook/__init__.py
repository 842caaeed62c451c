"""The webhook role: Alertmanager receiver, alert store, feedback page, label export."""
