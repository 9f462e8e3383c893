# One image for every Python service; docker-compose.yml picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY setup.cfg pyproject.toml README.md ./
COPY config.py logs.py ./
COPY web ./web
COPY tasks ./tasks
COPY consumers ./consumers
COPY db ./db
COPY streams ./streams
COPY bench ./bench
RUN pip install .
COPY alembic.ini ./
COPY migrations ./migrations
# The notification event schema the notifier checks events against.
COPY docs/events ./docs/events

RUN useradd --system --uid 10001 app && mkdir -p /var/log/salesflow && chown app /var/log/salesflow
USER 10001
ENV LOG_DIR=/var/log/salesflow
