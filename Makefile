# Developer entry points. `make test` is what CI runs (through .ci/run).
.PHONY: bootstrap test test-chart test-cli test-e2e lint docs

PYTEST := .venv/bin/pytest

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

lint: ## ruff on the package, the tests and the chart's scripts
	.venv/bin/ruff check src tests charts/mlflow/files

docs: ## regenerate the chart README's parameter table from values.yaml
	.tools/node/node_modules/.bin/readme-generator --values charts/mlflow/values.yaml --readme charts/mlflow/README.md
