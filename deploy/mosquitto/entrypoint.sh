#!/bin/sh
# Builds Mosquitto's password file at container start, then runs the broker.
#
# No secret is committed: each MQTT user's password comes from the environment variable
# MQTT_PASSWORD_<USER> (e.g. MQTT_PASSWORD_PLANNER), or from a file named by
# MQTT_PASSWORD_<USER>_FILE (Docker secrets). A missing password stops the start with a
# message naming the variable. The file is written fresh on every start with hashed
# passwords (mosquitto_passwd, sha512-pbkdf2) and readable only by the broker's user.
# A "healthcheck" user gets a random password per start, kept in $MOSQUITTO_HEALTH_FILE,
# for the container healthcheck (it may only subscribe to darkstar/healthcheck).
set -eu

passwd_file="${MOSQUITTO_PASSWD_FILE:-/mosquitto/run/passwd}"
health_file="${MOSQUITTO_HEALTH_FILE:-/mosquitto/run/healthcheck.pw}"
users="${DARKSTAR_MQTT_USERS:-forecaster planner executor trainer oracle web homeassistant}"
run_user="${MOSQUITTO_RUN_USER-mosquitto}"

umask 077
created_dirs=""
for dir in "$(dirname "$passwd_file")" "$(dirname "$health_file")"; do
    if [ ! -d "$dir" ]; then
        mkdir -p "$dir"
        created_dirs="$created_dirs $dir"
    fi
done
tmp_file="$passwd_file.new"
trap 'rm -f "$tmp_file"' EXIT
: > "$tmp_file"

for user in $users; do
    case "$user" in
        "" | *[!a-z0-9_-]*)
            echo "mosquitto entrypoint: bad MQTT user name '$user' (use a-z, 0-9, _ and -)" >&2
            exit 1
            ;;
    esac
    var="MQTT_PASSWORD_$(printf '%s' "$user" | tr 'a-z-' 'A-Z_')"
    eval "value=\${$var:-}"
    eval "value_file=\${${var}_FILE:-}"
    if [ -z "$value" ] && [ -n "$value_file" ]; then
        if [ ! -r "$value_file" ]; then
            echo "mosquitto entrypoint: ${var}_FILE=$value_file is not readable" >&2
            exit 1
        fi
        value="$(cat "$value_file")"
    fi
    if [ -z "$value" ]; then
        echo "mosquitto entrypoint: no password for MQTT user '$user': set $var or ${var}_FILE" >&2
        exit 1
    fi
    mosquitto_passwd -b "$tmp_file" "$user" "$value"
done

health_pw="$(tr -dc 'A-Za-z0-9' < /dev/urandom | head -c 32)"
mosquitto_passwd -b "$tmp_file" healthcheck "$health_pw"
printf '%s' "$health_pw" > "$health_file"
mv "$tmp_file" "$passwd_file"

# The broker drops root privileges before it reads the password and ACL files.
if [ "$(id -u)" = 0 ] && [ -n "$run_user" ] && id "$run_user" > /dev/null 2>&1; then
    # shellcheck disable=SC2086 # word splitting of the list is intended
    chown "$run_user" "$passwd_file" "$health_file" $created_dirs
    if [ -d /mosquitto/data ]; then chown -R "$run_user" /mosquitto/data; fi
fi

echo "mosquitto entrypoint: password file written for: $users healthcheck" >&2
exec "$@"
