# Batchpilot: `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export BATCHPILOT_CACHE ?= $(HOME)/.cache/batchpilot
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2
BENCH_ARGS ?=
SIM_ARGS ?=
FLEET_ARGS ?=
COMPARE_ARGS ?=

.PHONY: help deps k8s-bins node-bins node-packages image test-real-node prometheus keda tools crds crds-check lint test test-unit test-integration demo bench bench-sim bench-fleet bench-faults compare sandbox-up sandbox-down clean

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml sandbox/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[sim,dev,export]' -e ./sandbox
	touch $@

deps: $(STAMP) ## create .venv and install the operator with its sim, dev and export extras, and the sandbox (sandbox/)

k8s-bins: ## build etcd, kube-apiserver, kube-controller-manager and helm once into $BATCHPILOT_CACHE
	@if [ -n "$$KUBEBUILDER_ASSETS" ]; then echo "using KUBEBUILDER_ASSETS=$$KUBEBUILDER_ASSETS"; else hack/build-k8s-bins.sh >/dev/null; fi

node-bins: ## build kubelet, kube-scheduler and the pause binary for the real node once into $BATCHPILOT_CACHE
	@nice -n 10 hack/build-node-bins.sh >/dev/null

image: node-packages node-bins ## build the operator, CPU Triton and pause images with buildah on a local Debian base (root; cached in $BATCHPILOT_CACHE/images)
	@nice -n 10 hack/build-images.sh >/dev/null

prometheus: ## build upstream Prometheus (with Kubernetes discovery) once into $BATCHPILOT_CACHE
	@hack/build-prometheus.sh >/dev/null

keda: ## build KEDA's operator and metrics API server (and copy its CRDs) once into $BATCHPILOT_CACHE
	@hack/build-keda.sh >/dev/null

tools: k8s-bins prometheus keda ## every binary the sandbox needs (kubectl is expected on PATH)
	@command -v kubectl >/dev/null || { echo "kubectl is required on PATH" >&2; exit 1; }

crds: deps ## regenerate crds/ from the API models
	$(BIN)/batchpilot crds

crds-check: deps ## fail when crds/ differs from the API models
	$(BIN)/batchpilot crds --check

lint: deps ## ruff and mypy
	$(BIN)/ruff check operator sandbox tests bench
	$(BIN)/mypy

test-unit: deps ## unit tests only (pure logic, no processes)
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

test: deps tools node-packages image lint crds-check ## everything CI runs: lint, type check, CRD check, unit, integration, e2e and real-node tests (root: the real node needs it); PYTEST_WORKERS (2) test files run at once, each worker with its own sandbox
	$(BIN)/pytest -q -ra --durations=15 -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

node-packages: ## install Debian's containerd, runc, buildah, debootstrap and CNI plugins when missing (root; the real node and make image need them)
	@hack/node-packages.sh

test-real-node: deps tools node-packages image ## the real-node tests alone (part of make test): Debian containerd + runc, kubelet, the built images; helm install of the chart in-cluster (root; ~12 min cold)
	$(BIN)/pytest -q -ra --durations=5 tests/real_node $(PYTEST_ARGS)

demo: deps tools ## run the sandbox, a sample InferenceService and a load step; writes out/demo/
	$(BIN)/batchpilot-sandbox demo

bench: deps tools bench-sim bench-fleet compare bench-faults ## reconcile 1,000 InferenceServices (throughput, p50/p95, memory, the loop's period held), decide() cost, the simulator comparison, its fleet-scale runs, its check against the sandbox, the real KEDA/HPA comparison and the longer faults under load; writes out/bench/
	$(BIN)/python -m bench.reconcile_scale --out out/bench $(BENCH_ARGS)
	$(BIN)/python -m bench.decide_cost --out out/bench
	$(BIN)/python -m bench.sim_validate --out out/bench/validate

bench-sim: deps ## the simulator comparison alone (every trace, the three services (ResNet-50 and BERT on H100 curves, ResNet-50 on the H200 kernel curve), 5 seeds, peers swept), served however late and with late requests rejected, and the MMPP ceiling of any reactive policy (bench/sim_ceiling.py); writes out/bench/sim/ and out/bench/sim-reject-late/; stopped, it resumes from their runs.jsonl (SIM_ARGS=--fresh runs everything again)
	$(BIN)/python -m bench.sim_compare --out out/bench/sim $(SIM_ARGS)
	$(BIN)/python -m bench.sim_compare --reject-late --out out/bench/sim-reject-late $(SIM_ARGS)
	for c in cached-image image-pull new-node; do $(BIN)/python -m bench.sim_ceiling --seeds 5 --cold-start $$c; done > out/bench/sim-reject-late/ceiling-mmpp.md

compare: deps tools ## Batchpilot vs the real KEDA and HPA in the sandbox (3 load shapes x 5 configs, ~60 min; COMPARE_ARGS=--quick ~15 min) and the simulator on the same arrivals; writes out/bench/compare/
	$(BIN)/python -m bench.compare_real --out out/bench/compare $(COMPARE_ARGS)

bench-faults: deps tools ## the longer faults under load alone, with a report (operator SIGKILLed mid-retune, Prometheus down 5 minutes; ~10 min; make test runs them too); writes out/bench/faults/
	$(BIN)/python -m bench.faults --out out/bench/faults

bench-fleet: deps ## the simulator at fleet scale: one service up to 1,000 replicas, 200 services on one GPU pool; writes out/bench/fleet/
	$(BIN)/python -m bench.sim_fleet --out out/bench/fleet $(FLEET_ARGS)

sandbox-up: deps tools ## start the sandbox in the background (KUBECONFIG is printed)
	$(BIN)/batchpilot-sandbox up

sandbox-down: ## stop a background sandbox
	$(BIN)/batchpilot-sandbox down

clean: ## remove the venv, sandbox state and outputs (keeps the binary cache)
	rm -rf $(VENV) .sandbox out .pytest_cache .mypy_cache .ruff_cache
