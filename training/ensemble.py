"""An ensemble of trained detectors: anomalous when any member says so.

The autoencoder knows only healthy behaviour, so it flags what it has never seen; the
supervised models are precise on the anomalies they were shown. Their OR is one serving graph:
each member scores its own last-W slice of the window, scores are normalised by the member's
threshold, and the ensemble's raw score is the largest (>= 1: some member calls it anomalous).
It is a candidate like any other, chosen or not on validation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .detector import AnomalyDetector
from .evaluate import best_f1_threshold, f1_at
from .series import Windows


class EnsembleDetector(AnomalyDetector):
    def __init__(self, members: list[AnomalyDetector]) -> None:
        super().__init__("classifier", window=max(m.window for m in members))
        self.kind = "ensemble"
        self.members = members
        first = members[0]
        self.feature_names, self.scaler, self.step_seconds = (
            first.feature_names,
            first.scaler,
            first.step_seconds,
        )
        self.type_centroids = first.type_centroids
        self.type_radius = first.type_radius
        self.filters = max(m.filters for m in members)
        self.train_info = {
            "members": [f"{m.kind} W={m.window} filters={m.filters}" for m in members],
            **first.train_info,
        }
        self.history = {f"{m.kind}_{k}": v for m in members for k, v in m.history.items()}

    def fit_decision(self, va: Windows) -> EnsembleDetector:
        """Thresholds on validation: the members' own (max >= 1) or one tuned on the max."""
        raw = self.raw_scores("", va.X)
        rules = {"any_member": 1.0, "val_f1": best_f1_threshold(raw, va.y)}
        self.threshold_rules = {
            n: {"score": "max_normalised", "threshold": t, "val_f1": f1_at(raw, va.y, t)}
            for n, t in rules.items()
        }
        return self.choose_rule(
            max(self.threshold_rules, key=lambda n: self.threshold_rules[n]["val_f1"])
        )

    def serving_model(self, mode: str | None = None):
        """One graph whatever `mode`: the members' scores, each over its own threshold, maxed."""
        import keras
        from keras import layers, ops

        if "max_normalised" not in self._serving:
            inp = keras.Input((self.window, len(self.feature_names)), name="window")
            scores, embs = [], []
            contrib = None
            for m in self.members:
                part = (
                    layers.Lambda(lambda t, w=m.window: t[:, -w:, :])(inp)
                    if m.window < self.window
                    else inp
                )
                out = m.serving_model()(part)
                scores.append(
                    layers.Lambda(lambda s, t=m.threshold: ops.reshape(s / t, (-1, 1)))(
                        out["score"]
                    )
                )
                embs.append(out["embedding"])
                if contrib is None or m.kind == "autoencoder":
                    contrib = out["contributions"]
            score = layers.Lambda(lambda s: ops.max(s, axis=-1))(layers.Concatenate()(scores))
            emb = layers.Concatenate(name="embedding_concat")(embs)
            self._serving["max_normalised"] = keras.Model(
                inp,
                {"score": score, "embedding": emb, "contributions": contrib},
                name="ensemble_serving",
            )
        return self._serving["max_normalised"]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(self.members):
            m.save(path / f"member{i}")
        state = {"kind": "ensemble", "members": len(self.members), "threshold": self.threshold,
                 "threshold_rules": self.threshold_rules, "rule": self.rule}  # fmt: skip
        (path / "detector.json").write_text(json.dumps(state, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> EnsembleDetector:
        path = Path(path)
        state = json.loads((path / "detector.json").read_text())
        ens = cls(
            [AnomalyDetector().import_weights(path / f"member{i}") for i in range(state["members"])]
        )
        ens.threshold_rules = state["threshold_rules"]
        return ens.choose_rule(state["rule"])


def load_detector(path: str | Path) -> AnomalyDetector:
    """A saved detector of any kind (single model or ensemble)."""
    state: dict[str, Any] = json.loads((Path(path) / "detector.json").read_text())
    if state.get("kind") == "ensemble":
        return EnsembleDetector.load(path)
    return AnomalyDetector().import_weights(path)
