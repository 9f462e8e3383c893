# Sales system: `make up` runs it on this machine, `make test` tests it.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV ?= .venv
# The local stack runs with the example keys of .env.example (stack/lib.sh sets the same).
export ALLOW_EXAMPLE_KEYS ?= true

.PHONY: help up down status test lint logs bench bench-ingest \
	bench-alerts compose-up compose-down compose-clean compose-ps compose-logs

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

bench-alerts: ## one evaluation of 1,000 alert rules against beat's one-minute interval
	@stack/up.sh >/dev/null && $(VENV)/bin/python bench/alert_rules.py $(ARGS)

bench-ingest: ## load the running system (Locust, wrk): accepted, stored, single endpoint, latency; writes bench/results/
	@stack/up.sh >/dev/null && $(VENV)/bin/python bench/ingestion.py $(ARGS)

compose-up: ## the system as containers: install Docker when missing, build the images, start and wait
	@stack/compose.sh up

compose-down: ## stop and remove the containers (the volumes, with the data, stay)
	@stack/compose.sh down

compose-clean: ## remove the containers and the volumes
	@stack/compose.sh clean

compose-ps: ## show each container and its health
	@stack/compose.sh ps

compose-logs: ## follow the containers' output
	@stack/compose.sh logs
