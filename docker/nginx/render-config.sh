#!/bin/sh
# Renders nginx.conf.template into $NGINX_CONF from the environment, with the
# defaults below for what is unset, then runs the given command (the image
# runs nginx with the rendered file). Only the names listed here are
# replaced; nginx's own $variables pass through.
set -eu

: "${NGINX_TEMPLATE:=/etc/nginx/webhook/nginx.conf.template}"
: "${NGINX_RUN_DIR:=/tmp/nginx}"
: "${NGINX_CONF:=$NGINX_RUN_DIR/nginx.conf}"
: "${NGINX_WORKERS:=auto}"
: "${NGINX_ERROR_LOG:=/dev/stderr}"
: "${NGINX_ACCESS_LOG:=/dev/stdout}"
# Ports, or address:port.
: "${HTTP_LISTEN:=80}"
: "${HTTPS_LISTEN:=443}"
: "${FAL_HTTPS_LISTEN:=8443}"
: "${UPSTREAM_1:=aisha-webhook-api-1:8000}"
: "${UPSTREAM_2:=aisha-webhook-api-2:8000}"
: "${TLS_CERT:=/etc/nginx/tls/fullchain.pem}"
: "${TLS_KEY:=/etc/nginx/tls/privkey.pem}"
: "${ADMIN_ALLOW_CIDR:=127.0.0.1/32}"
: "${BODY_LIMIT:=1m}"
: "${WEBHOOK_RATE:=50r/s}"
: "${WEBHOOK_BURST:=100}"
# How often the instances' names are looked up again (0: never).
: "${NGINX_RESOLVE_SECS:=3}"
export NGINX_RUN_DIR NGINX_WORKERS NGINX_ERROR_LOG NGINX_ACCESS_LOG HTTP_LISTEN HTTPS_LISTEN \
    FAL_HTTPS_LISTEN UPSTREAM_1 UPSTREAM_2 TLS_CERT TLS_KEY ADMIN_ALLOW_CIDR BODY_LIMIT \
    WEBHOOK_RATE WEBHOOK_BURST

for file in "$TLS_CERT" "$TLS_KEY"; do
    if [ ! -r "$file" ]; then
        echo "render-config: $file is missing; mount the TLS certificate and key (see docs/DEPLOYMENT.md)" >&2
        exit 1
    fi
done

mkdir -p "$NGINX_RUN_DIR"
# The single quotes are the point: envsubst gets the names, not values.
# shellcheck disable=SC2016
envsubst '${NGINX_RUN_DIR} ${NGINX_WORKERS} ${NGINX_ERROR_LOG} ${NGINX_ACCESS_LOG} ${HTTP_LISTEN}
${HTTPS_LISTEN} ${FAL_HTTPS_LISTEN} ${UPSTREAM_1} ${UPSTREAM_2} ${TLS_CERT} ${TLS_KEY}
${ADMIN_ALLOW_CIDR} ${BODY_LIMIT} ${WEBHOOK_RATE} ${WEBHOOK_BURST}' \
    <"$NGINX_TEMPLATE" >"$NGINX_CONF"
# shellcheck disable=SC2016
if grep -n '\${[A-Z_0-9]*}' "$NGINX_CONF" >&2; then
    echo "render-config: unreplaced names above in $NGINX_TEMPLATE" >&2
    exit 1
fi

# nginx looks the instances' names up when it loads its configuration, and
# a restarted or replaced instance container comes back with a new address
# (Docker and podman both hand them out afresh). Watch what the names
# resolve to and reload nginx, gracefully, when it changes; a failed reload
# (a name gone for a moment) leaves the running configuration in place.
watch_upstreams() {
    nginx_bin=$1 hosts=""
    for upstream in "$UPSTREAM_1" "$UPSTREAM_2"; do
        host=${upstream%:*}
        case "$host" in
        *[!0-9.]*) hosts="$hosts $host" ;;
        esac
    done
    [ -n "$hosts" ] && [ "$NGINX_RESOLVE_SECS" != 0 ] || return 0
    (
        resolved() {
            for host in $hosts; do
                getent hosts "$host" || echo "- $host"
            done
        }
        last=$(resolved)
        while sleep "$NGINX_RESOLVE_SECS"; do
            now=$(resolved)
            if [ "$now" != "$last" ]; then
                echo "render-config: the instances' addresses changed; reloading nginx" >&2
                "$nginx_bin" -c "$NGINX_CONF" -s reload || true
                last=$now
            fi
        done
    ) &
}

if [ "$#" -gt 0 ]; then
    case "$1" in
    nginx | */nginx) watch_upstreams "$1" ;;
    esac
    exec "$@"
fi
