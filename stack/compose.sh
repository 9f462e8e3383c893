#!/usr/bin/env bash
# The system under Docker Compose on this machine (make compose-up, compose-down,
# compose-clean, compose-ps, compose-logs).
#
#   up     installs Docker's engine and the Compose plugin when missing, starts the engine
#          when it is not running, writes .env with fresh keys when there is none, builds
#          the images and starts every service, waiting until each is healthy.
#   down   stops and removes the containers; the volumes (the data) stay.
#   clean  removes the containers and the volumes.
#   ps | logs
#
# Where Docker Hub cannot be reached, the official images docker-compose.yml names are
# replaced by local stand-ins (stack/compose.local.yml, stack/images/); COMPOSE_IMAGES=
# official or local forces the choice (from the environment or .env, like
# COMPOSE_WAIT_SECONDS). Published ports come from .env or the environment (COLLECTOR_PORT,
# ANALYTICS_PORT, PROMETHEUS_PORT, GRAFANA_PORT); COMPOSE_PROJECT_NAME runs a second copy.
set -euo pipefail
cd "$(dirname "$0")/.."
source stack/lib.sh

LOCAL=.local/compose
LOG_DIR=$LOCAL  # where wait_for's message points
DEBIAN_BASE=salesflow-local/debian:bookworm
PYTHON_BASE=salesflow-local/python:3.11
COMPOSE_VERSION=v2.40.3

# A setting of this script: from the environment, else from .env, else the default.
setting() {
    local value=${!1:-}
    [ -n "$value" ] || value=$(sed -n "s/^$1=//p" .env 2>/dev/null | tail -n 1)
    echo "${value:-$2}"
}

install_engine() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    command -v curl >/dev/null || missing+=(curl)
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

# Compose v2 is not packaged in Debian 12: built from its Go module (a few minutes, once).
install_compose() {
    docker compose version >/dev/null 2>&1 && return
    command -v go >/dev/null || die "Docker Compose v2 is missing and Go is not installed to build it (install docker-compose-plugin, or Go)"
    say "building Docker Compose $COMPOSE_VERSION from the Go module proxy (a few minutes, once)"
    local dir
    dir=$(mktemp -d)
    (cd "$dir" && go mod init compose-build >/dev/null 2>&1 \
        && go get "github.com/docker/compose/v2/cmd@$COMPOSE_VERSION" \
        && mkdir -p "$HOME/.docker/cli-plugins" \
        && go build -o "$HOME/.docker/cli-plugins/docker-compose" github.com/docker/compose/v2/cmd)
    rm -rf "$dir"
    docker compose version >/dev/null || die "the Compose plugin was built but does not run"
}

engine_running() { docker info >/dev/null 2>&1; }

start_engine() {
    engine_running && return
    say "starting the Docker engine (log: $LOCAL/dockerd.log)"
    mkdir -p "$LOCAL"
    setsid nohup dockerd >> "$LOCAL/dockerd.log" 2>&1 < /dev/null &
    wait_for "the Docker engine" 60 engine_running
}

# official: Docker Hub answers (or its images are here already); local: stand-ins.
choose_images() {
    local choice
    choice=$(setting COMPOSE_IMAGES auto)
    if [ "$choice" = auto ]; then
        if docker image inspect postgres:15 >/dev/null 2>&1 \
            || [ "$(curl -s -o /dev/null -m 5 -w '%{http_code}' https://registry-1.docker.io/v2/ || true)" != 000 ]; then
            choice=official
        else
            choice=local
        fi
    fi
    mkdir -p "$LOCAL"
    echo "$choice" > "$LOCAL/images"
}

compose() {
    local files=(-f docker-compose.yml)
    [ "$(cat "$LOCAL/images" 2>/dev/null)" = local ] && files+=(-f stack/compose.local.yml)
    COMPOSE_BAKE=false docker compose "${files[@]}" "$@"
}

debian_mirror() {
    local found
    found=$(cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
        | sed -n 's/^URIs: *//p; s/^deb \(http[^ ]*\) .*/\1/p' | grep -m 1 debian || true)
    echo "${found:-http://deb.debian.org/debian}"
}

# The bases of the stand-ins: Debian 12 from its packages, and Debian's Python 3.11 with
# this machine's CA bundle (pip inside the builds checks TLS against it).
build_bases() {
    if ! docker image inspect "$DEBIAN_BASE" >/dev/null 2>&1; then
        local root mirror
        root=$(mktemp -d) mirror=$(debian_mirror)
        say "making the Debian base image from $mirror (about a minute, once)"
        debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
        tar -C "$root" -c . | docker import - "$DEBIAN_BASE" >/dev/null
        rm -rf "$root"
    fi
    say "building the Python base image"
    tar -c -C stack/images/python Dockerfile -C /etc/ssl/certs ca-certificates.crt \
        | docker build -q -t "$PYTHON_BASE" - > "$LOCAL/python-base.log" 2>&1 \
        || { cat "$LOCAL/python-base.log" >&2; die "the Python base image did not build"; }
}

resolve_kafka() {
    command -v mvn >/dev/null && command -v java >/dev/null || {
        say "installing maven and Java 17 (to resolve Kafka's jars)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends maven openjdk-17-jre-headless >/dev/null
    }
    STACK_LOCAL=$PWD/.local install_kafka_libs
    # The stand-in's build context: its files, the local stack's logging, the jars (linked).
    local context=$LOCAL/kafka-image
    rm -rf "$context"
    mkdir -p "$context"
    cp stack/images/kafka/* stack/kafka/log4j2.xml "$context/"
    cp -al .local/kafka/libs "$context/libs"
}

new_env() {
    [ -f .env ] && return
    python3 stack/new_env.py .env.example .env
    say "created .env from .env.example with new keys and passwords"
}

published() { compose port "$1" "$2" 2>/dev/null | sed 's/^0\.0\.0\.0/127.0.0.1/'; }

up() {
    install_engine
    install_compose
    start_engine
    new_env
    choose_images
    if [ "$(cat "$LOCAL/images")" = local ]; then
        build_bases
        resolve_kafka
    fi
    say "building the images ($(cat "$LOCAL/images") base images)"
    compose build --quiet
    say "starting the services (waiting until each is healthy)"
    compose up -d --wait --wait-timeout "$(setting COMPOSE_WAIT_SECONDS 600)" || {
        compose ps -a >&2
        die "not every service became healthy: make compose-logs shows why"
    }
    compose ps
    cat <<URLS

The system is up under Docker Compose.
  Data Collector  http://$(published collector 8001)/docs   (API: /api/v1, OpenAPI: /openapi.json)
  Analytics       http://$(published analytics 8002)/docs   (API: /api/v1, OpenAPI: /openapi.json)
  Notifications   http://$(published notifications 8003)/docs   (alert rules and the alert history)
  Prometheus      http://$(published prometheus 9090)
  Logs            the logs volume (make compose-logs follows the containers)
  make compose-ps shows every container; make compose-down stops them (data stays).
URLS
    [ "$(cat "$LOCAL/images")" = local ] && say "Grafana is left out here: its image cannot be pulled on this machine"
    return 0
}

case "${1:-}" in
    up) up ;;
    down | clean)
        engine_running || { say "the Docker engine is not running: nothing to stop"; exit 0; }
        if [ "$1" = clean ]; then compose down --volumes --remove-orphans; else compose down; fi ;;
    ps) compose ps -a ;;
    logs) compose logs --follow --tail 50 ;;
    *) die "usage: stack/compose.sh up|down|clean|ps|logs" ;;
esac
