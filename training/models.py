"""The proposal's three Keras models over (W, F) windows, and their serving heads.

Each model is trained in its natural form, then wrapped in a *serving* model with one fixed
signature the exporter understands: window (B, W, F) -> score (B,), embedding (B, E),
contributions (B, F). The decision rule (threshold) and class centroids live in model.json.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


def _encoder(window: int, n_features: int, filters: int, name: str) -> keras.Model:
    inp = keras.Input((window, n_features))
    x = layers.Conv1D(filters, 3, padding="same", activation="relu")(inp)
    x = layers.Conv1D(filters, 3, strides=2, padding="same", activation="relu")(x)
    return keras.Model(inp, x, name=name)


def build_autoencoder(
    window: int, n_features: int, filters: int = 32, latent: int = 8
) -> tuple[keras.Model, keras.Model]:
    """Conv autoencoder; returns (autoencoder, encoder to the latent vector)."""
    inp = keras.Input((window, n_features), name="window")
    h = _encoder(window, n_features, filters, "ae_conv")(inp)
    z = layers.Dense(latent, name="latent")(layers.Flatten()(h))
    y = layers.Dense((window // 2) * filters, activation="relu")(z)
    y = layers.Reshape((window // 2, filters))(y)
    y = layers.Conv1DTranspose(filters, 3, strides=2, padding="same", activation="relu")(y)
    out = layers.Conv1D(n_features, 3, padding="same", name="reconstruction")(y)
    return keras.Model(inp, out, name="autoencoder"), keras.Model(inp, z, name="ae_encoder")


def build_classifier(
    window: int, n_features: int, filters: int = 32, dense: int = 16
) -> tuple[keras.Model, keras.Model]:
    """Conv binary classifier (sigmoid, BCE); returns (classifier, embedding model)."""
    inp = keras.Input((window, n_features), name="window")
    h = _encoder(window, n_features, filters, "clf_conv")(inp)
    h = layers.GlobalMaxPooling1D()(h)
    emb = layers.Dense(dense, activation="relu", name="embedding")(h)
    out = layers.Dense(1, activation="sigmoid", name="p_anomaly")(layers.Dropout(0.2)(emb))
    return keras.Model(inp, out, name="classifier"), keras.Model(inp, emb, name="clf_embedding")


def build_siamese_encoder(
    window: int, n_features: int, filters: int = 32, dense: int = 16
) -> keras.Model:
    """The shared encoder: windows -> unit-length embeddings (distances bounded in [0, 2])."""
    inp = keras.Input((window, n_features), name="window")
    h = _encoder(window, n_features, filters, "siam_conv")(inp)
    h = layers.GlobalMaxPooling1D()(h)
    e = layers.Dense(dense)(h)
    e = layers.UnitNormalization(name="unit_embedding")(e)
    return keras.Model(inp, e, name="siamese_encoder")


def contrastive_loss(margin: float = 1.0):
    """Hadsell et al.'s contrastive loss: same pairs pulled together, different pairs pushed to
    at least `margin` apart and no further. The proposal's version rewards different pairs for
    any distance, so it is unbounded below; the hinge max(0, margin - d) bounds it."""

    def loss(y_same, d):
        y_same = ops.cast(ops.reshape(y_same, (-1,)), d.dtype)
        d = ops.reshape(d, (-1,))
        return ops.mean(y_same * ops.square(d) + (1.0 - y_same) * ops.square(ops.relu(margin - d)))

    return loss


def build_siamese_pair_model(encoder: keras.Model) -> keras.Model:
    w = encoder.input_shape[1:]
    a, b = keras.Input(w, name="a"), keras.Input(w, name="b")
    ea, eb = encoder(a), encoder(b)
    d = layers.Lambda(
        lambda t: ops.sqrt(ops.sum(ops.square(t[0] - t[1]), axis=-1) + 1e-9), name="distance"
    )([ea, eb])
    return keras.Model([a, b], d, name="siamese")


RECENT_STEPS = 2
# Autoencoder scores: "reconstruction" is the mean over features of log1p(recent squared error)
# (every feature counts about equally, so one badly reconstructed feature is diluted 1/F);
# "mse" is log1p of the mean recent squared error (ranks like PCA's reconstruction error: a
# large deviation of a few features dominates); "latent" is log1p of the latent distance to
# the normal centre.
AE_SCORES = ("reconstruction", "mse", "latent")


class _Serving(layers.Layer):
    """Score, embedding and per-feature contributions for one model kind, as graph ops
    (TFLite builtins only), so the exporter needs no TensorFlow to score."""

    def __init__(
        self,
        kind: str,
        center: np.ndarray,
        anom_center: np.ndarray | None = None,
        score_mode: str = "reconstruction",
        **kw,
    ):
        super().__init__(**kw)
        if score_mode not in AE_SCORES:
            raise ValueError(f"score_mode must be one of {AE_SCORES}, not {score_mode!r}")
        self.kind = kind
        self.score_mode = score_mode
        self.center = ops.convert_to_tensor(np.asarray(center, np.float32))
        self.anom_center = (
            None
            if anom_center is None
            else ops.convert_to_tensor(np.asarray(anom_center, np.float32))
        )

    def call(self, window, main_out, emb):
        # Every score is bounded and well-conditioned, so float32 TFLite matches Keras to
        # 1e-5 absolute: log1p tames the autoencoder's errors, and the siamese score is
        # d_normal / (d_normal + d_anomalous) in [0, 1] (0.5: equidistant), not a ratio
        # that explodes near the anomalous centroid.
        last = ops.abs(window[:, -1, :])
        if self.kind == "autoencoder":
            # Error of the most recent steps: the window's old steps are context, and an
            # anomaly that just began must not be averaged away over W steps.
            recent = ops.mean(ops.square(window - main_out)[:, -RECENT_STEPS:, :], axis=1)
            err = ops.log1p(recent)  # (B, F)
            if self.score_mode == "latent":
                dist = ops.sqrt(ops.sum(ops.square(emb - self.center), axis=-1) + 1e-12)
                score = ops.log1p(dist)
            elif self.score_mode == "mse":
                score = ops.log1p(ops.mean(recent, axis=-1))
            else:
                score = ops.mean(err, axis=-1)
            return score, emb, err
        if self.kind == "classifier":
            return ops.reshape(main_out, (-1,)), emb, last
        d_n = ops.sqrt(ops.sum(ops.square(emb - self.center), axis=-1) + 1e-12)
        d_a = ops.sqrt(ops.sum(ops.square(emb - self.anom_center), axis=-1) + 1e-12)
        return d_n / (d_n + d_a), emb, last


def build_serving(
    kind: str,
    main: keras.Model,
    embed: keras.Model,
    center,
    anom_center=None,
    score_mode: str = "reconstruction",
) -> keras.Model:
    """`score_mode` (one of AE_SCORES) matters for the autoencoder only."""
    inp = keras.Input(main.input_shape[1:], name="window")
    main_out = main(inp) if kind != "siamese" else embed(inp)
    emb = embed(inp)
    score, e, contrib = _Serving(kind, center, anom_center, score_mode, name="serving")(
        inp, main_out, emb
    )
    return keras.Model(
        inp, {"score": score, "embedding": e, "contributions": contrib}, name=f"{kind}_serving"
    )
