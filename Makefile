# vid2mesh developer commands. `make demo` and `make test` are the README's two commands:
# each sets everything up first (system packages, .venv/ with pinned versions).
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
DATAFLOW_STAMP := $(VENV)/.setup-dataflow-stamp
# Ultralytics must never phone home; Beam must not fetch its Prism runner.
export YOLO_OFFLINE := 1
export YOLO_CONFIG_DIR := $(CURDIR)/.cache/ultralytics
export MPLCONFIGDIR := $(CURDIR)/.cache/matplotlib
export PYTHONDONTWRITEBYTECODE := 1
PYTEST_WORKERS ?= 2

.PHONY: setup system-deps test demo bench lint clean lock setup-dataflow lock-dataflow image
setup: $(STAMP)

# System packages (Debian): ffmpeg for decoding/encoding, libGL/glib for OpenCV.
system-deps:
	@bash .ci/system-deps.sh

$(STAMP): pyproject.toml constraints.txt .ci/system-deps.sh
	@bash .ci/system-deps.sh
	@command -v $(PYTHON) >/dev/null || { echo "setup: $(PYTHON) not found; install Python 3.11 or run 'make PYTHON=/path/to/python3.11'"; exit 1; }
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==26.3" "setuptools==84.2.1" "wheel==0.48.0"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,dask,export]"
	$(PY) -m pip check
	@mkdir -p $(YOLO_CONFIG_DIR) $(MPLCONFIGDIR)
	@touch $(STAMP)

# The tests include the Dataflow launcher's dry run, so they need the launcher's packages too.
# A test whose xdist worker process dies (a crash, not a failure) runs once more on a fresh
# worker; tests/conftest.py prints how the worker ended. Failures are never rerun.
test: setup-dataflow
	$(PY) -m pytest -n $(PYTEST_WORKERS) --durations=15 --reruns 1 --only-rerun "crashed while running" tests

demo: setup
	$(PY) -m beam_jobs.demo

bench: setup
	$(PY) -m bench.body_model --quick
	$(PY) -m bench.ba_accuracy --quick
	$(PY) -m bench.ba_speed --quick
	$(PY) -m bench.tracking --quick
	$(PY) -m bench.perception --quick

clean:
	rm -rf $(VENV) .cache .pytest_cache

# Re-resolve every dependency and rewrite constraints.txt (commit the result).
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet "pip==26.3" && .venv-lock/bin/pip install --quiet -e ".[test,dask,export]"
	{ head -3 constraints.txt; .venv-lock/bin/pip freeze --exclude-editable; } > constraints.new && mv constraints.new constraints.txt
	rm -rf .venv-lock

# The Dataflow launcher: the project plus apache-beam[gcp] (GCS, the Dataflow client), every
# package pinned by constraints-dataflow.txt; then the launcher checks its Beam and Python
# versions against the worker image (docs/dataflow.md).
setup-dataflow: $(DATAFLOW_STAMP)

$(DATAFLOW_STAMP): $(STAMP) constraints-dataflow.txt
	$(PY) -m pip install --quiet -c constraints-dataflow.txt -e ".[test,dataflow,dask]"
	$(PY) -m pip check
	$(PY) -c "from beam_jobs.dataflow import check_launcher; check_launcher(None); print('launcher ok: Beam and Python match the worker image')"
	@touch $(DATAFLOW_STAMP)

# Re-resolve the launcher's dependencies against constraints.txt and rewrite
# constraints-dataflow.txt (commit the result; run after `make lock`).
lock-dataflow:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet "pip==26.3" && .venv-lock/bin/pip install --quiet -c constraints.txt -e ".[test,dataflow,dask]"
	{ head -3 constraints-dataflow.txt; .venv-lock/bin/pip freeze --exclude-editable; } > constraints-dataflow.new && mv constraints-dataflow.new constraints-dataflow.txt
	rm -rf .venv-lock

# The worker image (Dataflow, or Dask on Kubernetes), tagged with the source hash it is built
# from: `make image IMAGE=REGION-docker.pkg.dev/PROJECT/vid2mesh/worker`.
image: setup
	@[ -n "$(IMAGE)" ] || { echo "make image: set IMAGE=REGION-docker.pkg.dev/PROJECT/vid2mesh/worker"; exit 2; }
	tag="$(IMAGE):$$($(PY) -c "import importlib.metadata as m; print(m.version('vid2mesh'))")-src-$$($(PY) -c "from transforms.provenance import source_hash; print(source_hash())")"; \
	docker build -t "$$tag" . && echo "built $$tag: push it and pass --sdk_container_image $$tag"
