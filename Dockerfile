# One image for every Python service; docker-compose.yml gives each one its command.
# BASE_IMAGE is the official python:3.11-slim; where no image registry can be reached,
# stack/compose.sh passes a stand-in built from Debian's packages (stack/images/python).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    LOG_DIR=/var/log/salesflow

# The dependencies setup.cfg declares, into a virtualenv (the same on either base). Their
# own layer: it is built again when they change, not when the code does.
COPY setup.cfg /tmp/setup.cfg
RUN python -m venv /opt/venv \
    && python -c "import configparser; c = configparser.ConfigParser(); \
c.read('/tmp/setup.cfg'); print(c['options']['install_requires'])" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/setup.cfg /tmp/requirements.txt

# The Prometheus JMX exporter agent for the Kafka container (its version is the local
# stack's, stack/lib.sh): the one-shot kafka-jmx-agent service copies it onto the volume
# the broker loads it from. Checked against its SHA-256 before it is kept.
ARG MAVEN_REPOSITORY=https://repo1.maven.org/maven2
ARG JMX_AGENT_VERSION=1.0.1
ARG JMX_AGENT_SHA256=7d61f737fd661610ccc14aea79764faa1ea94a340cbc8f0029b3d2edea3d80c1
RUN mkdir -p /opt/jmx-agent /var/lib/jmx-agent \
    && python -c "import hashlib, sys, urllib.request; \
data = urllib.request.urlopen(sys.argv[1], timeout=120).read(); \
assert hashlib.sha256(data).hexdigest() == sys.argv[2], 'checksum mismatch'; \
open('/opt/jmx-agent/jmx_prometheus_javaagent.jar', 'wb').write(data)" \
        "$MAVEN_REPOSITORY/io/prometheus/jmx/jmx_prometheus_javaagent/$JMX_AGENT_VERSION/jmx_prometheus_javaagent-$JMX_AGENT_VERSION.jar" \
        "$JMX_AGENT_SHA256"

# The code runs from /app (PYTHONPATH): settings, templates and the event schema are read
# beside it.
RUN useradd --system --uid 10001 --home-dir /app app \
    && mkdir -p /var/log/salesflow && chown app /var/log/salesflow /var/lib/jmx-agent
WORKDIR /app
COPY config.py logs.py health.py alembic.ini ./
COPY db ./db
COPY streams ./streams
COPY web ./web
COPY tasks ./tasks
COPY consumers ./consumers
COPY bench ./bench
COPY migrations ./migrations
# The notification event schema the notifier checks events against.
COPY docs/events ./docs/events

USER 10001
