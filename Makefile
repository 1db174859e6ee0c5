# Two commands on a fresh machine: `make run` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: venv run run-fashion test test-all test-multiworker coverage bench bench-distributed arm fashion-data clean

venv: $(STAMP)

# Reinstall only when the packaging changes. setup.cfg holds ranges; constraints.txt the exact
# versions measured with, which the venv gets.
$(STAMP): setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

# Debian ships the full Fashion-MNIST; install it where we are root and apt exists, else say so.
fashion-data:
	@if [ -d $(FASHION_DIR) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 || \
	   (apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1)) || \
	  echo "note: could not install dataset-fashion-mnist; Fashion-MNIST tests use generated IDX files only"; \
	else echo "note: not root or no apt-get; skipping dataset-fashion-mnist"; fi

run: $(STAMP)
	$(PY) -m pipeline.run --flagfile=configs/mnist.flags

run-fashion: $(STAMP) fashion-data
	$(PY) -m pipeline.run --flagfile=configs/fashion_mnist.flags

test: $(STAMP) fashion-data
	$(PY) -m pytest

# The suite with line coverage of pipeline/ and export/ (in-process code; subprocess runs are
# not traced).
coverage: $(STAMP) fashion-data
	$(PY) -m pytest --cov=pipeline --cov=export --cov-report=term

# Multi-worker training (two local workers through pipeline.launch, a killed worker) and
# sharded sweeps: real processes, about 2 minutes on 2 cores; kept out of `make test`.
test-multiworker: $(STAMP)
	$(PY) -m pytest -m slow -n 0 tests/pipeline/test_multiworker.py tests/pipeline/test_sweep_shards.py

# Everything, the slow benchmarks included.
test-all: $(STAMP) fashion-data
	$(PY) -m pytest -m ""

# Full Fashion-MNIST when Debian's package is there, else the embedded MNIST subset.
bench: $(STAMP) fashion-data
	@if [ -d $(FASHION_DIR) ]; then f=configs/fashion_mnist.flags; \
	else f=configs/mnist.flags; echo "Fashion-MNIST not installed: comparing on the MNIST subset"; fi; \
	$(PY) -m benchmarks.compare --flagfile=$$f --out_dir=bench_out --benchmark_runs=50000
	$(PY) -m benchmarks.crosscheck --out_dir=bench_out
	@for b in int8_layers op_profile epoch_time widths camera streaming; do $(PY) -m benchmarks.$$b > bench_out/$$b.md.tmp || exit 1; \
	  mv bench_out/$$b.md.tmp bench_out/$$b.md; cat bench_out/$$b.md; done
	@if $(PY) -c "import sys; from export import emulator; sys.exit(not emulator.ready())"; \
	then $(MAKE) --no-print-directory arm; \
	else echo "note: ARM check skipped: the emulated runtime is not set up (make arm; root)"; fi

# Resume overhead (a run killed at 60%) and 1 vs 2 local workers on Fashion-MNIST; ~5 min.
bench-distributed: $(STAMP) fashion-data
	@mkdir -p bench_out
	$(PY) -m benchmarks.distributed > bench_out/distributed.md.tmp && \
	  mv bench_out/distributed.md.tmp bench_out/distributed.md
	@cat bench_out/distributed.md

# The ARM build of LiteRT, emulated (qemu-user, Debian's arm64 Python, the aarch64 wheel; set up
# once in ~/.cache/prune-pipeline, root needed for apt-get), and the ARM check on small_cnn and
# sparse_mobilenet (about 10 minutes). Then `python -m export.arm FILE...` or --arm_check.
arm: $(STAMP)
	$(PY) -m export.arm --setup_only
	@mkdir -p bench_out
	$(PY) -m benchmarks.arm > bench_out/arm.md.tmp && mv bench_out/arm.md.tmp bench_out/arm.md
	@cat bench_out/arm.md

clean:
	rm -rf $(VENV) runs bench_out *.egg-info
