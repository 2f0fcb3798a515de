#!/bin/sh
# Container healthcheck: log in as the per-start "healthcheck" user and wait for the SUBACK.
set -eu
health_file="${MOSQUITTO_HEALTH_FILE:-/mosquitto/run/healthcheck.pw}"
exec mosquitto_sub -h 127.0.0.1 -p "${MOSQUITTO_HEALTH_PORT:-1883}" -u healthcheck -P "$(cat "$health_file")" \
    -t darkstar/healthcheck -E -W 5 -i "healthcheck-$$"
