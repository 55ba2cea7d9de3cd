# Rosetta: two commands do all the set-up on a fresh machine.
#   make demo   - create .venv, install the pinned dependencies, run the ingestion DAG on the sample photos
#   make test   - create/update .venv, install Orthanc if missing, run the tests (they start the services they need)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PIP_VERSION := 26.3

export AIRFLOW__CORE__LOAD_EXAMPLES := False
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: venv system-deps demo airflow airflow-celery test test-fast lint typecheck bench lock clean

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Rosetta needs Python 3.11 (set PYTHON=python3.11)")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check "pip==$(PIP_VERSION)"
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# Orthanc (the PACS the DICOM network tests run against) and Chromium (the UI test's browser) come from Debian.
system-deps:
	@test -x /usr/sbin/Orthanc && test -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so && test -x /usr/bin/chromium || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq orthanc orthanc-dicomweb chromium; }

demo: venv
	$(BIN)/rosetta demo

# The real deployment: api-server, scheduler, dag-processor, triggerer on 127.0.0.1:8080, LocalExecutor,
# this machine's PostgreSQL as the metadata DB (database rosetta_airflow, created if missing).
airflow: venv
	$(BIN)/rosetta airflow

# The same with the CeleryExecutor: Redis broker on this machine, a worker on the cpu queue and one on the gpu queue.
airflow-celery: venv
	$(BIN)/rosetta airflow --executor CeleryExecutor

test: venv system-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

test-fast: venv
	$(BIN)/pytest -m "not slow and not dags"

lint: venv
	$(BIN)/ruff check .

typecheck: venv
	$(BIN)/mypy

# Every benchmark always runs; the exit status says whether every target was met.
bench: venv
	@rc=0; $(BIN)/python benchmarks/bench_ingest.py || rc=1; \
	  $(BIN)/python benchmarks/bench_connectors.py || rc=1; \
	  $(BIN)/python benchmarks/bench_dicom.py || rc=1; \
	  $(BIN)/python benchmarks/bench_alignment.py || rc=1; \
	  $(BIN)/python benchmarks/bench_alignment_chunked.py || rc=1; \
	  $(BIN)/python benchmarks/bench_vectors.py --no-index || rc=1; \
	  $(BIN)/python benchmarks/bench_vectors.py --points 200000 || rc=1; \
	  $(BIN)/python benchmarks/bench_encoders.py || rc=1; \
	  $(BIN)/python benchmarks/bench_e2e.py || rc=1; exit $$rc

# Re-resolve the lock from pyproject.toml in a scratch venv (needs the package registry).
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/python -m pip install -q "pip==$(PIP_VERSION)" && .lockvenv/bin/python -m pip install -q -e '.[dev]'
	{ echo "# Lock file: every package of the resolved environment, pinned. Regenerate with 'make lock'."; \
	  echo "# torch is the CPU build (the wheel pip finds on this machine kind); see README."; \
	  .lockvenv/bin/python -m pip freeze --exclude-editable; } > constraints.txt
	rm -rf .lockvenv

clean:
	rm -rf .airflow .rosetta .bench .pytest_cache .mypy_cache .ruff_cache
