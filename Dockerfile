# syntax=docker/dockerfile:1
# coredns-anomaly images, one per purpose:
#   runtime (default)  the exporter and the webhook on LiteRT; no TensorFlow; models/default inside
#   training           `coredns-anomaly train` with TensorFlow; mount datasets and an output dir
#
#   docker build -t coredns-anomaly .
#   docker build --target training -t coredns-anomaly:training .
#
# Every install step is scripts/install-runtime.sh: CI runs the same script into a fresh venv
# (tests/deploy), so the image's dependency set is tested even where Docker is not available.
# The base is pinned to a patch release; pin its digest too (python@sha256:...) in your registry.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 coredns-anomaly \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/coredns-anomaly \
       --create-home --shell /usr/sbin/nologin coredns-anomaly

# Builds the venvs; its sources and pip cache never reach the final images.
FROM base AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scripts/install-runtime.sh scripts/
COPY coredns_anomaly coredns_anomaly
COPY contracts contracts
COPY exporter exporter
COPY training training
COPY rules rules
COPY webhook webhook
COPY loop loop
COPY lab lab
RUN --mount=type=cache,target=/root/.cache/pip \
    scripts/install-runtime.sh --venv /opt/venv /src

FROM build AS build-training
RUN --mount=type=cache,target=/root/.cache/pip \
    scripts/install-runtime.sh --training --venv /opt/venv-training /src

FROM base AS training
COPY --from=build-training /opt/venv-training /opt/venv
COPY models/default /opt/coredns-anomaly/models/default
WORKDIR /work
USER 10001:10001
# A batch job: nothing to probe.
HEALTHCHECK NONE
ENTRYPOINT ["coredns-anomaly"]
CMD ["train", "--help"]

FROM base AS runtime
LABEL org.opencontainers.image.title="coredns-anomaly" \
      org.opencontainers.image.description="CoreDNS anomaly exporter and Alertmanager webhook" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/venv /opt/venv
# The exporter needs only the flatbuffer and its card; the Keras weights stay in the training image.
COPY models/default/model.tflite models/default/model.json /opt/coredns-anomaly/models/default/
COPY deploy/docker/healthcheck.py /opt/coredns-anomaly/healthcheck.py
ENV COREDNS_ANOMALY_MODEL=/opt/coredns-anomaly/models/default
# The webhook's default store (./webhook.db) lands here: mount a volume on it.
WORKDIR /var/lib/coredns-anomaly
USER 10001:10001
EXPOSE 9096 9095
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/coredns-anomaly/healthcheck.py"]
ENTRYPOINT ["coredns-anomaly"]
CMD ["--help"]
