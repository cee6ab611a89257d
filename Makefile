# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
UV     := $(VENV)/bin/uv
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast test-pandas2 install lint peers pandas2 bench clean lab screenshots

# Benchmark peers (pandera, Evidently) live in venvs of their own, never in nbprod's.
PEER_PANDERA   := benchmarks/.venv/.installed
PEER_EVIDENTLY := benchmarks/.venv-evidently/.installed

# compileall: where PYTHONDONTWRITEBYTECODE is set, every process would otherwise
# recompile mlflow from source (tens of seconds each time).
# The install also builds the JupyterLab sidebar (labextension/, node + jlpm through hatch-jupyter-builder)
# when its sources are newer than the build in src/nbprod/labextension.
$(STAMP): pyproject.toml labextension/package.json $(wildcard labextension/src/*.ts)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check uv
	$(UV) pip install --quiet --python $(PY) -e '.[test,lab]'
	$(PY) -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/nbprod demo

# Most of the suite's time is spent waiting on servers, kernels and the browser, not on the CPU:
# TEST_JOBS processes (pytest-xdist; each test file stays on one process, for its module fixtures)
# take it from ~30 to ~10 minutes on 2 cores. TEST_JOBS=0 runs it in this process, serially.
TEST_JOBS ?= 4
test: $(STAMP)
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile $(PYTEST_ARGS)

# The edit-test loop: every test that starts no server and no kernel (those are marked slow). Nothing there
# waits on a server, so it is CPU-bound: one process a core (each extra one re-imports the stack, ~8 s of CPU).
# FAST_JOBS=0 runs it serially. Figures: README ("Tests").
FAST_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
test-fast: $(STAMP)
	$(PY) -m pytest -n $(FAST_JOBS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

# JupyterLab on this project, on 127.0.0.1 only, behind a fresh token; prints the URL to open. Ctrl+C stops it.
LAB_PORT ?= 8888
lab: $(STAMP)
	@token=$$($(PY) -c 'import secrets; print(secrets.token_hex(24))'); \
	echo; echo "  JupyterLab on $(CURDIR): http://127.0.0.1:$(LAB_PORT)/lab/tree/notebooks/quickstart.ipynb?token=$$token"; \
	echo "  (port busy? make lab LAB_PORT=8899; Ctrl+C stops it)"; echo; \
	exec $(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --port=$(LAB_PORT) --ServerApp.port_retries=0 \
	  --IdentityProvider.token=$$token --ServerApp.root_dir=$(CURDIR) $(if $(filter 0,$(shell id -u)),--allow-root)

# The README's pictures: the browser test of the quickstart, saving its screenshots into docs/.
screenshots: $(STAMP)
	NBPROD_UPDATE_SCREENSHOTS=1 $(PY) -m pytest -q -p no:cacheprovider tests/ui/test_quickstart_ui.py tests/ui/test_sidebar.py

# ruff (E, F, I, B at 120 columns) and mypy (check_untyped_defs) over the code; settings in pyproject.toml.
# A package's __init__.pyi (its lazy public names, nbprod/_lazy.py) hides its __init__.py from the
# first mypy run; the second checks those __init__.py files themselves.
LAZY_INITS := $(patsubst %.pyi,%.py,$(wildcard src/nbprod/__init__.pyi src/nbprod/*/__init__.pyi))

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks tools
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy $(LAZY_INITS)

# nbprod supports pandas >= 2.1 and `make test` runs on the newest (3.x). pandas 2 differs where
# nbprod reads frames (object vs Arrow strings, NaN vs None, copy semantics), so CI also runs the
# tests of everything that reads or writes frames on pandas 2, in a venv of its own.
PANDAS2       := .venv-pandas2
PANDAS2_STAMP := $(PANDAS2)/.installed
PANDAS2_TESTS := tests/test_profile.py tests/test_validate.py tests/test_rules.py tests/test_ood.py \
                 tests/test_magics_data.py tests/test_drift.py tests/test_serving.py tests/test_serving_http.py \
                 tests/test_predlog.py tests/test_predlog_records.py tests/test_monitoring.py tests/test_registry.py \
                 tests/test_evaluate.py

# The side venvs (pandas 2, the peers) need neither the main venv nor the sidebar's build
# (SKIP_JUPYTER_BUILDER: the hook would rebuild labextension/ once per venv), so that
# `make -j3 install peers pandas2` builds all of them at once (.ci/run does).
SIDE_VENV = $(PYTHON) -m venv $(1) && $(1)/bin/pip install --quiet --disable-pip-version-check uv
SIDE_UV   = SKIP_JUPYTER_BUILDER=1 $(1)/bin/uv pip install --quiet --python $(1)/bin/python

$(PANDAS2_STAMP): pyproject.toml
	$(call SIDE_VENV,$(PANDAS2))
	$(call SIDE_UV,$(PANDAS2)) -e '.[test]' 'pandas>=2.1,<3'
	$(PANDAS2)/bin/python -m compileall -q -j 0 $(PANDAS2)/lib >/dev/null || true
	touch $@

pandas2: $(PANDAS2_STAMP)

test-pandas2: $(PANDAS2_STAMP)
	$(PANDAS2)/bin/python -m pytest $(PYTEST_ARGS) $(PANDAS2_TESTS)

# Evidently 0.7.23 needs pandas < 3, hence its own venv (pandera is there too, for pandas 2 figures); tests/test_drift.py compares
# nbprod's drift decisions with it there (CI builds it; elsewhere that test skips with a hint).
$(PEER_EVIDENTLY): benchmarks/requirements-evidently.txt
	$(call SIDE_VENV,benchmarks/.venv-evidently)
	$(call SIDE_UV,benchmarks/.venv-evidently) -r benchmarks/requirements-evidently.txt
	benchmarks/.venv-evidently/bin/python -m compileall -q -j 0 benchmarks/.venv-evidently/lib >/dev/null || true
	touch $@

$(PEER_PANDERA): pyproject.toml benchmarks/requirements.txt
	$(call SIDE_VENV,benchmarks/.venv)
	$(call SIDE_UV,benchmarks/.venv) -r benchmarks/requirements.txt -e .
	benchmarks/.venv/bin/python -m compileall -q -j 0 benchmarks/.venv/lib >/dev/null || true
	touch $@

peers: $(PEER_PANDERA) $(PEER_EVIDENTLY)

# Every benchmark once, each against its peer; the figures in BENCHMARKS.md come from these.
bench: install peers
	$(PY) benchmarks/bench_import.py
	benchmarks/.venv/bin/python benchmarks/bench_validate.py
	benchmarks/.venv-evidently/bin/python benchmarks/bench_validate.py --categorical object
	$(PY) benchmarks/bench_registry.py
	$(PY) benchmarks/bench_serve.py
	$(PY) benchmarks/bench_deploy.py
	benchmarks/.venv-evidently/bin/python benchmarks/bench_drift.py
	$(PY) benchmarks/bench_audit.py
	$(PY) benchmarks/bench_predlog.py
	$(PY) benchmarks/bench_jobs.py
	$(PY) benchmarks/bench_pipeline.py

clean:
	rm -rf $(VENV) $(PANDAS2) .nbprod build dist src/nbprod/labextension labextension/lib labextension/node_modules
