# Two commands matter: `make run` (the main job) and `make test`.
PROFILE ?= smoke
DATA ?=
PY := .venv/bin/python
DATA_ARG := $(if $(DATA),--data-root $(DATA),)

.PHONY: setup run book publish test refresh clean

setup: .venv/.requirements.sha256

.venv/.requirements.sha256: requirements.txt scripts/install.sh pyproject.toml
	bash scripts/install.sh

## run every notebook with papermill into runs/<profile> (real data) or runs/<profile>-synthetic,
## then render that run's book to _build/html
run: setup
	$(PY) -m ssinfnet run --profile $(PROFILE) $(DATA_ARG) --book

## render the committed real-data run (runs/cpu) without re-running anything
publish: setup
	$(PY) -m ssinfnet book --run-dir runs/cpu

## unit and integration tests, then the notebooks under nbval on the embedded synthetic default,
## executed into a fresh temporary run folder (never a user's runs/, never a cached model)
test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS) tests
	@runs=$$(mktemp -d) && trap 'rm -rf "$$runs"' EXIT && \
	  echo "SSINFNET_DATA=synthetic SSINFNET_RUNS=$$runs pytest --nbval-lax notebooks" && \
	  SSINFNET_DATA=synthetic SSINFNET_RUNS=$$runs $(PY) -m pytest -q --nbval-lax \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider notebooks

## re-execute the notebook sources in place (smoke, synthetic): the outputs nbval compares against
refresh: setup
	$(PY) -m ssinfnet refresh

clean:
	rm -rf _build _book runs/smoke runs/smoke-synthetic
