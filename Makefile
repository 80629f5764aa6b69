# Set-up and everyday commands. `make demo` and `make test` are the README's first lines.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= train,cpu,jax,dev

.PHONY: install demo test test-fast lint bench web-vendor clean

$(BIN)/vae-edge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

install: $(BIN)/vae-edge

demo: install  ## train `small` on the embedded digits, export, verify, benchmark, report
	$(BIN)/vae-edge run --out runs/demo

test: install lint
	$(BIN)/python -m pytest -q

test-fast: install  ## no training, no export, no browser: under a minute
	$(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check vae_edge tests benchmarks examples

web-vendor: install  ## refresh the vendored onnxruntime-web files from npm at the pinned version
	$(BIN)/python -m vae_edge.web.vendor

bench: install  ## the committed reference report in benchmarks/
	$(BIN)/python benchmarks/reference.py

clean:
	rm -rf runs export/*/ .pytest_cache
