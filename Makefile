# The two commands a new user needs are `make demo` and `make test`; each installs what it needs.
.PHONY: demo test test-fast fuzz lint format bench soak kafka-start kafka-stop venv venv-demo lock

venv:
	@bash scripts/bootstrap.sh

# The demo's venv holds only what the demo runs (no torch): requirements/demo.lock.
venv-demo:
	@FINSENT_LOCK=demo bash scripts/bootstrap.sh

demo: venv-demo
	.venv/bin/finsent demo

# Regenerate requirements/*.lock after changing a dependency in pyproject.toml.
lock:
	bash scripts/lock.sh

# The checks of `make lint` first, then pytest on two workers: each runs its own session broker
# and PostgreSQL, and a file's tests (with its module fixtures) stay on one worker.
test: lint
	bash scripts/ensure_postgres.sh
	bash scripts/ensure_chromium.sh
	bash scripts/ensure_compose.sh
	bash scripts/ensure_qemu.sh
	.venv/bin/pytest -n 2 --dist loadfile

# The unit tests only: no broker, no PostgreSQL, no browser (under 90 s on 2 cores).
test-fast: venv
	.venv/bin/pytest -n 2 -m "not kafka and not postgres and not browser"

# The fuzz suite's long mode: many more hostile inputs per target, with random seeds (make test
# runs a small fixed budget of the same tests). FUZZ_EXAMPLES=N sets how many per target.
FUZZ_EXAMPLES ?= 5000
fuzz: venv
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) .venv/bin/pytest -m fuzz -p no:cacheprovider tests/test_fuzz.py

# Style, types (mypy over finsent/), the import layers (import-linter) and the declared
# dependencies against the package's imports (deptry).
lint: venv
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	.venv/bin/lint-imports
	.venv/bin/deptry .

format: venv
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

bench: venv
	.venv/bin/python bench/bench_pipeline.py
	.venv/bin/python bench/bench_windows.py
	.venv/bin/python bench/bench_model.py
	.venv/bin/python bench/bench_int8_cpus.py
	.venv/bin/python bench/bench_stream.py
	.venv/bin/python bench/bench_scaleout.py
	.venv/bin/python bench/bench_alerts.py
	.venv/bin/python bench/bench_backtest.py
	bash scripts/ensure_chromium.sh
	.venv/bin/python bench/bench_dashboard.py

# The soak test (bench/soak.py; not in `make test` or `make bench`): every stage on a local broker,
# a generated feed at 100 stories/s for 30 minutes, then lag, RSS growth and exact window counts
# judged. SOAK_ARGS passes options (e.g. SOAK_ARGS="--minutes 3 --warmup-minutes 1").
soak: venv
	bash scripts/ensure_chromium.sh
	.venv/bin/python bench/soak.py $(SOAK_ARGS)

kafka-start: venv
	.venv/bin/finsent kafka start

kafka-stop: venv
	.venv/bin/finsent kafka stop
