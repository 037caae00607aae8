# Developer entry points. `make test` is what CI runs (through .ci/run).
.PHONY: demo bootstrap test test-chart test-cli test-e2e lint docs bench bench-install bench-server bench-cli

PYTEST := .venv/bin/pytest

demo: ## the CLI's main job against the fakes: no cluster, no cloud account, no root
	scripts/bootstrap.sh demo
	.venv/bin/python -m tests.fakes.demo

bootstrap: ## install Helm 3 and 4, services, the venv (idempotent)
	scripts/bootstrap.sh

test: bootstrap lint ## ruff, then every suite, on Helm 3 and Helm 4
	$(PYTEST) -n 2 -m "not e2e"
	$(PYTEST) -n 2 -m e2e

test-chart: ## chart tests only
	$(PYTEST) -n 2 tests/chart

test-cli: ## CLI and plugin tests only
	$(PYTEST) -n 2 tests/cli

test-e2e: ## rendered chart run as local processes against PostgreSQL, MariaDB, fake-gcs-server
	$(PYTEST) -n 2 -m e2e

bench: bench-cli bench-install bench-server ## every benchmark (about 8 min; on a quiet machine)

bench-install: ## install orchestration against the fakes with Google-like latency
	.venv/bin/python bench/install.py

bench-server: ## the chart's default server against MLflow's defaults, same PostgreSQL
	.venv/bin/python bench/server.py

bench-cli: ## --help, straight and through Helm 3 and 4
	.venv/bin/python bench/cli.py

lint: ## ruff on the package, the tests, the benchmarks and the chart's scripts
	.venv/bin/ruff check src tests bench charts/mlflow/files

docs: ## regenerate the chart README's parameter table from values.yaml
	.tools/node/node_modules/.bin/readme-generator --values charts/mlflow/values.yaml --readme charts/mlflow/README.md
