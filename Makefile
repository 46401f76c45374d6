# The README's two commands are `make demo` and `make test`; both set up .venv first (fast when
# nothing changed). CI runs `make test` (.ci/run): the pytest suite, then a colcon build + test of
# the package with its install tree checked (tools/check_colcon.sh).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test demo lint format clean
setup:
	@bash tools/setup_env.sh

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS) test
	bash tools/check_colcon.sh $(VENV)

demo: setup
	$(PY) -m stereospike_ros demo

lint: setup
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: setup
	$(PY) -m ruff format . && $(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) build install log .pytest_cache .ruff_cache
