# syntax=docker/dockerfile:1
# One image for every Darkstar service; docker-compose.yml runs it once per service with a
# different command (python -m services.<name>).
#
#   docker build -t darkstar .                                   # the `all` extra: every runtime dependency
#   docker build -t darkstar-planner --build-arg EXTRAS=planner,postgres,mysql .   # slim, one service
#
# builder: uv installs exactly what uv.lock pins into /opt/venv.
# runtime: slim Python, the venv and the source, a non-root user, a /readyz healthcheck.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# bash: the RUN lines below build an array of --extra flags (hadolint's SC3054 assumes sh).
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG UV_VERSION=0.13.8
# Comma-separated extras from pyproject.toml. The default `all` is every runtime dependency the lock
# pins (every service, the web app, plots, both database drivers); CI builds the same environment
# in a fresh venv and starts every entrypoint until /readyz answers (deploy/check_entrypoints.py).
ARG EXTRAS=all
ENV UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3
RUN pip install --no-cache-dir "uv==${UV_VERSION}"
WORKDIR /app
# Dependencies first, in their own layer: a code change does not reinstall them.
COPY pyproject.toml uv.lock README.md ./
# hadolint ignore=SC3054
RUN extra_flags=(); for extra in ${EXTRAS//,/ }; do extra_flags+=(--extra "$extra"); done; \
    uv sync --frozen --no-install-project "${extra_flags[@]}"
COPY shared ./shared
COPY services ./services
COPY examples ./examples
# hadolint ignore=SC3054
RUN extra_flags=(); for extra in ${EXTRAS//,/ }; do extra_flags+=(--extra "$extra"); done; \
    uv sync --frozen --no-editable "${extra_flags[@]}"

FROM ${PYTHON_IMAGE} AS runtime
# libgomp1: OpenMP runtime that LightGBM's wheel links against (the base image's Debian release
# fixes its version).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 darkstar \
    && useradd --system --uid 10001 --gid darkstar --home-dir /app --shell /usr/sbin/nologin darkstar
COPY --from=builder /opt/venv /opt/venv
COPY --from=builder --chown=root:root /app /app
# Writable state (SQLite, models) lives under /app/var; a named volume mounted there or at
# /app/var/models starts with this ownership, so the non-root user can write it.
RUN mkdir -p /app/var/models && chown -R darkstar:darkstar /app/var
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    DARKSTAR_SITE=/etc/darkstar/site.yaml \
    DARKSTAR__HTTP__HOST=0.0.0.0 \
    DARKSTAR_HEALTH_PORT=8080
WORKDIR /app
USER 10001:10001
VOLUME ["/app/var"]
EXPOSE 8080 8081 8082 8083 8084 8085
# Each service sets DARKSTAR_HEALTH_PORT to its own HTTP port (docker-compose.yml). /readyz: broker
# and database reachable and inputs fresh (a 503 there is "unhealthy"; /healthz only says alive).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('DARKSTAR_HEALTH_PORT', '8081'), timeout=4)"]
# Default: the whole stack in one process (embedded broker, SQLite in /app/var).
CMD ["darkstar", "up"]
