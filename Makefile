# The everyday commands. `make install test` is what CI runs (.ci/run).
PY ?= python3
BENCH ?= runs/bench

.PHONY: install install-base test demo synth validate clean

install:            ## everything: runtime + data tools + training stack + tests
	$(PY) -m pip install -e ".[train,dev]"

install-base:       ## the edge install: runtime only (no torch)
	$(PY) -m pip install -e .

test:
	$(PY) -m pytest tests

synth:              ## a small generated benchmark
	auditor-lite data synth --out $(BENCH) --clips 200 --seed 0 --overwrite

validate:
	auditor-lite data validate $(BENCH)

clean:
	rm -rf runs .pytest_cache .benchmarks build *.egg-info
