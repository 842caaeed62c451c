"""What the roles hand each other, defined once: every role imports it, none repeats it.

- ``bundle``: the model bundle's card, model.json, as a typed, versioned ``BundleMeta`` with one
  writer (training) and one reader (the exporter and the rules generator).
- ``names``: the exporter's series names, the alert-name prefix, the fault classes, the type
  the exporter gives an unknown anomaly, the verdicts engineers record.
- ``signals``: the classic rules' signals (name, PromQL, alert), whose thresholds training
  learns and the rules generator renders.
- ``thresholds``: thresholds.json, those learned thresholds, with one writer (training) and one
  reader (the rules generator).
- ``errors``: the base class of errors about such a hand-over.

Stdlib only, so that any role (the exporter, the webhook, the rules generator, training)
imports it without pulling in another role's dependencies.
"""
