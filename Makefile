# `make demo` and `make test` each do all set-up on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Override for your platform, e.g. TORCH="torch torchvision --index-url https://download.pytorch.org/whl/cu124"
TORCH  ?= torch==2.14.1 torchvision==0.29.1
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint bench chromium clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

# Browser tests drive Debian's Chromium through Playwright (its own browser download is not used).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q chromium fonts-dejavu-core; }

demo: $(STAMP)
	$(VENV)/bin/featscope demo --open

test: $(STAMP) chromium
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

bench: $(STAMP) chromium
	$(PY) bench/run_all.py --quick

clean:
	rm -rf $(VENV) .pytest_cache
