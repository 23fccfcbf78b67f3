# ngl: `make demo` and `make test` are all a fresh clone needs.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
JOBS    ?= 2

.PHONY: demo test test-fast bench install clean

# pyproject.toml declares ranges (ngl is a library); constraints.txt pins the exact tested set.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[all]'
	touch $(STAMP)

install: $(STAMP)

## The main job on the embedded digits data: every registered loss vs CE, report + plots in runs/demo
demo: $(STAMP)
	$(BIN)/ngl demo --out runs/demo

## The whole test suite (slow tests included), two processes
test: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile -q

## Only the quick tests
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

## Speed benchmarks: print ratios, write JSON under benchmarks/results (about 8 minutes)
bench: $(STAMP)
	$(BIN)/python benchmarks/loss_speed.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/bench_scaling.py
	$(BIN)/python benchmarks/search_speed.py

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
