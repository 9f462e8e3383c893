# Sales system: `make up` runs it on this machine, `make test` tests it.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV ?= .venv
# The local stack runs with the example keys of .env.example (stack/lib.sh sets the same).
export ALLOW_EXAMPLE_KEYS ?= true

.PHONY: help up down status test lint logs bench bench-ingest

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

up: ## install what is missing, start PostgreSQL, Kafka, Prometheus and every service
	@stack/up.sh

down: ## stop every process (data stays in .local/)
	@stack/down.sh

status: ## show each process of the local stack
	@stack/status.sh

test: ## start what the tests need, then lint and run every test
	@stack/test.sh $(ARGS)

lint: ## ruff check and format check
	@$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

logs: ## follow every log file
	@tail -n 20 -F .local/logs/*.log

bench: ## benchmark the analytics API on a generated history (10 million rows by default)
	@stack/up.sh >/dev/null && $(VENV)/bin/python bench/analytics.py $(ARGS)

bench-ingest: ## load the running system with Locust: transactions accepted and stored per second
	@stack/up.sh >/dev/null && $(VENV)/bin/python bench/ingestion.py $(ARGS)
