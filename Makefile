# The everyday commands. `make install test test-edge` is what CI runs (.ci/run).
PY ?= python3
BENCH ?= runs/bench

.PHONY: install install-base test test-edge bad-inputs demo synth validate clean

install:            ## everything: runtime + data tools + training stack + tests
	$(PY) -m pip install -e ".[train,dev,ros]"

install-base:       ## the edge install: runtime only (no torch)
	$(PY) -m pip install -e .

test:
	$(PY) -m pytest tests

test-edge:          ## the wheel in a fresh torch-free venv, runtime/CLI/fuzz tests, no skips (docs/testing.md)
	bash .ci/edge

bad-inputs:         ## the bad-input campaign through the CLI (docs/testing.md)
	$(PY) bench/bad_inputs.py --out runs/bad_inputs.json

synth:              ## a small generated benchmark
	auditor-lite data synth --out $(BENCH) --clips 200 --seed 0 --overwrite

validate:
	auditor-lite data validate $(BENCH)

clean:
	rm -rf runs .pytest_cache .benchmarks build *.egg-info
