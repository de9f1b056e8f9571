# Entry points, each installs what it needs into .venv first:
#   make demo   train -> convert -> parity -> benchmark -> report on the bundled MNIST
#   make test   the test suite
#   make lint   ruff: pyflakes, import order, lines over 120 characters (pyproject.toml [tool.ruff])
#   make device emulated Raspberry Pi checks (arm64, armhf) on the demo's artifacts and an RGB model; needs root
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
OUT ?= out
STAMP := $(VENV)/.keras2edge-installed

.PHONY: demo test lint device install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) -m train --out $(OUT)/model --verbose 2 --force
	$(PY) -m convert $(OUT)/model/model.keras --out $(OUT)/artifacts --force
	$(PY) -m convert parity $(OUT)/artifacts
	$(PY) -m benchmarks $(OUT)/artifacts --out $(OUT)/report --force

test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check .

device: $(STAMP)
	test -f $(OUT)/artifacts/manifest.json || $(MAKE) demo
	$(PY) tests/device/run.py --artifacts $(OUT)/artifacts

clean:
	rm -rf $(OUT) build dist *.egg-info
