# The README's two commands: `make demo` and `make test`. Both set up a fresh machine first.
SHELL := /bin/bash
PY := .venv/bin/python
CLI := .venv/bin/coredns-anomaly

.PHONY: setup demo test test-fast test-integration lint format dataset

setup:
	@bash scripts/bootstrap.sh

# The whole loop on loopback: lab CoreDNS, exporter, Prometheus + generated rules,
# Alertmanager, webhook; 5 minutes of learning, faults, a printed timeline, runs/demo/report.md (~10 minutes).
demo: setup
	$(CLI) demo --out runs/demo

test: setup venv-tflite
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	$(PY) -m pytest -m "not integration" -q
	$(PY) -m pytest -m integration -q
	# The exporter again, on tflite-runtime 2.14 instead of LiteRT (no TensorFlow in that venv).
	.venv-tflite/bin/python -m pytest tests/exporter tests/deploy/test_deploy_interpreters.py -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -m "not integration" -q

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format:
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .

# The shipped datasets: one seeded command each (see docs/dataset.md), ~35 minutes each.
dataset: setup
	$(CLI) lab record --preset shipped --out data/lab-v1
	$(CLI) lab record --preset shipped --seed 2027 --out data/lab-v2

# Environments unlike the shipped one (docs/dataset.md, "Environments"): one seeded command
# each, ~30 minutes each (env-step15 ~53, env-soak and env-soak2 ~58, env-soak3 ~93, env-soak4 ~72). Three run
# CoreDNS v1.12.4 and env-soak3 v1.11.4, built on demand.
.PHONY: dataset-envs
dataset-envs: setup
	bash scripts/build-coredns.sh v1.12.4
	$(CLI) lab record --preset env-small --seed 3101 --out data/envs/env-small
	$(CLI) lab record --preset env-nocache-rewrite --seed 3102 --out data/envs/env-nocache-rewrite
	$(CLI) lab record --preset env-autopath --seed 3103 --out data/envs/env-autopath
	$(CLI) lab record --preset env-large --seed 3104 --out data/envs/env-large
	$(CLI) lab record --preset env-step15 --seed 3105 --out data/envs/env-step15
	$(CLI) lab record --preset env-soak --seed 3106 --out data/envs/env-soak
	$(CLI) lab record --preset env-soak2 --seed 3107 --out data/envs/env-soak2
	bash scripts/build-coredns.sh v1.11.4
	$(CLI) lab record --preset env-soak3 --seed 3108 --out data/envs/env-soak3
	$(CLI) lab record --preset env-soak4 --seed 3109 --out data/envs/env-soak4
	# env-day: 36 instances for 110 min at 2 s (45 MB); git holds it as Prometheus at 15 s holds it
	$(CLI) lab record --preset env-day --seed 3110 --out runs/env-day-2s
	$(CLI) dataset resample runs/env-day-2s --step 15 --out data/envs/env-day

# The shipped bundles (docs/results.md): models/default, the autoencoder trained at 2 s on the
# lab and four environment recordings (one seeded command); models/step15 and models/step30,
# the same network counted for a 15 or 30 s scrape step (`coredns-anomaly restep`).
# data/envs/env-soak, env-soak2, env-soak3, env-soak4 and env-step15 stay out of every training:
# bench/transfer.py scores the bundles on them (make transfer).
TRAIN_2S := data/lab-v1 data/lab-v2 data/envs/env-small data/envs/env-nocache-rewrite data/envs/env-autopath data/envs/env-large
.PHONY: models transfer
models: setup
	$(CLI) train $(foreach d,$(TRAIN_2S),--dataset $(d)) --export-kind autoencoder --out models/default --report docs
	$(CLI) restep --model models/default --step 15 --out models/step15
	$(CLI) restep --model models/default --step 30 --out models/step30

# The transfer figures of README and docs/results.md (~1 h: four leave-one-environment-out
# trainings in runs/loeo, then replays).
ENVS_2S := data/envs/env-small data/envs/env-nocache-rewrite data/envs/env-autopath data/envs/env-large
transfer: setup
	$(PY) bench/transfer.py --loeo runs/loeo $(foreach d,$(ENVS_2S),--env $(d)) \
		--out bench/results/transfer-loeo.json --png docs/img/transfer-loeo.png
	$(PY) bench/transfer.py --env data/envs/env-soak --env data/envs/env-soak2 --env data/envs/env-soak3 \
		--env data/envs/env-soak4
	$(PY) bench/transfer.py --model models/step15 --step 15 --env data/envs/env-step15 --env data/envs/env-soak \
		--env data/envs/env-soak2 --env data/envs/env-soak3 --env data/envs/env-soak4 --out bench/results/transfer-15s.json \
		--png docs/img/transfer-15s.png
	$(PY) bench/transfer.py --model models/step30 --step 30 --env data/envs/env-step15 --env data/envs/env-soak \
		--env data/envs/env-soak2 --env data/envs/env-soak3 --env data/envs/env-soak4 --out bench/results/transfer-30s.json \
		--png docs/img/transfer-30s.png
	# env-day, a healthy day held out of every choice: at 2 s from the recording (make dataset-envs), 15 and 30 s from git
	if [ -d runs/env-day-2s ]; then $(PY) bench/transfer.py --env runs/env-day-2s --out bench/results/transfer-day.json \
		--png docs/img/transfer-day.png; fi
	$(PY) bench/transfer.py --model models/step15 --step 15 --env data/envs/env-day --out bench/results/transfer-day-15s.json \
		--png docs/img/transfer-day-15s.png
	$(PY) bench/transfer.py --model models/step30 --step 30 --env data/envs/env-day --out bench/results/transfer-day-30s.json \
		--png docs/img/transfer-day-30s.png

# The exporter on tflite-runtime 2.14 (numpy<2, Python <= 3.11): CI runs the exporter tests on
# both interpreters. Idempotent (stamp in the venv); PYTHON=python3.11 picks the interpreter.
.PHONY: venv-tflite
venv-tflite:
	@bash scripts/install-runtime.sh --tflite-runtime --editable --test-deps --venv .venv-tflite

# The committed generated rules (docs/rules.md): alerts from the shipped bundle, classic rules
# from thresholds training learns on the training datasets (real Prometheus, ~1 min) and scored
# on their test split (~2 min), their promtool tests, PrometheusRule manifests and
# docs/runbooks.md. The Kubernetes copy uses the jobs the Operator derives from Service names
# (exporter Service, kube-dns).
CLASSIC := rules/generated/classic
.PHONY: rules
rules:
	$(CLI) rules generate --model models/default --out rules/generated
	$(CLI) rules generate --model models/default --out rules/generated/kubernetes \
		--job coredns-anomaly-exporter --coredns-job kube-dns --manifest deploy/kubernetes/prometheusrule.yaml
	$(CLI) thresholds learn $(foreach d,$(TRAIN_2S),--dataset $(d)) --out $(CLASSIC)
	$(CLI) rules classic --thresholds $(CLASSIC)/thresholds.json --out $(CLASSIC)
	$(CLI) rules classic --thresholds $(CLASSIC)/thresholds.json --out $(CLASSIC) --legacy-names
	$(CLI) thresholds evaluate $(foreach d,$(TRAIN_2S),--dataset $(d)) \
		--classic $(CLASSIC)/coredns-classic.rules.yml --model models/default --out $(CLASSIC)
	$(CLI) rules runbooks --out docs/runbooks.md
