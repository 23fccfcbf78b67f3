# ngl: `make demo` and `make test` are all a fresh clone needs.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
JOBS    ?= 2

.PHONY: demo test test-fast test-lower bench install clean

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

## The loss core on the lowest declared releases (torch 2.13.0 CPU from this machine's wheel folder,
## numpy 1.26.4, scipy 1.11.4, sympy 1.13.3): the tested lower bounds of pyproject.toml
LOWER_TORCH ?= /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl
LOWER_TESTS := tests/test_losses.py tests/test_loss_reference.py tests/test_ngl_fast.py tests/test_expr.py tests/test_compile.py
test-lower:
	@if [ ! -f "$(LOWER_TORCH)" ]; then echo "test-lower: $(LOWER_TORCH) not here; skipped"; exit 0; fi; \
	test -x .venv-lower/bin/python || $(PY) -m venv .venv-lower; \
	.venv-lower/bin/python -m pip install -q "$(LOWER_TORCH)" numpy==1.26.4 scipy==1.11.4 sympy==1.13.3 tqdm pytest && \
	PYTHONPATH=src .venv-lower/bin/python -m pytest -q -o addopts="" -p no:cacheprovider $(LOWER_TESTS)

## Speed benchmarks: print ratios, write JSON under benchmarks/results (about 8 minutes)
bench: $(STAMP)
	$(BIN)/python benchmarks/loss_speed.py
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/bench_scaling.py
	$(BIN)/python benchmarks/search_speed.py
	$(BIN)/python benchmarks/keras_speed.py
	$(BIN)/python benchmarks/user_data.py

clean:
	rm -rf $(VENV) .venv-lower build *.egg-info src/*.egg-info .pytest_cache
