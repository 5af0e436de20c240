# Shared by the deploy scripts (sourced, not run).
# shellcheck shell=bash

COMPOSE_FILE=${COMPOSE_FILE:-docker-compose.webhook.prod.yml}
ENV_FILE=${ENV_FILE:-prod.env}
NETWORK=${NETWORK:-aisha_webhook_cluster}
REGISTRY=${REGISTRY:-registry.example.com/aisha}
# Used by the scripts that source this file.
# shellcheck disable=SC2034
API_SERVICES=(aisha-webhook-api-1 aisha-webhook-api-2)
# shellcheck disable=SC2034
NGINX_SERVICE=aisha-nginx-webhook
HEALTH_TIMEOUT=${HEALTH_TIMEOUT:-180}
HEALTH_INTERVAL=${HEALTH_INTERVAL:-3}

step() { printf '==> %s\n' "$*"; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# The default tag: the commit being deployed, so a rollback can name it.
default_tag() {
    git rev-parse --short=12 HEAD 2>/dev/null || echo latest
}

require_docker() {
    command -v docker >/dev/null || die "docker is not installed or not on PATH"
}

# `docker compose` (plugin) when present, else `docker-compose`; COMPOSE
# overrides, e.g. COMPOSE=docker-compose.
compose() {
    local -a cmd
    if [ -n "${COMPOSE:-}" ]; then
        read -r -a cmd <<<"$COMPOSE"
    elif docker compose version >/dev/null 2>&1; then
        cmd=(docker compose)
    elif command -v docker-compose >/dev/null; then
        cmd=(docker-compose)
    else
        die "neither 'docker compose' nor 'docker-compose' is available"
    fi
    "${cmd[@]}" -f "$COMPOSE_FILE" --env-file "$ENV_FILE" "$@"
}

require_files() {
    [ -f "$COMPOSE_FILE" ] || die "$COMPOSE_FILE not found (run from the repository root or set COMPOSE_FILE)"
    [ -f "$ENV_FILE" ] || die "$ENV_FILE not found: copy prod.env.example to $ENV_FILE and fill it in"
}

ensure_network() {
    step "network $NETWORK"
    if docker network inspect "$NETWORK" >/dev/null 2>&1; then
        echo "    exists"
    else
        docker network create "$NETWORK" >/dev/null
        echo "    created"
    fi
}

build_images() {
    step "building $REGISTRY/aisha-webhook-api:$TAG"
    docker build -f docker/Dockerfile.webhook-api -t "$REGISTRY/aisha-webhook-api:$TAG" .
    step "building $REGISTRY/aisha-nginx-webhook:$TAG"
    docker build -f docker/nginx/Dockerfile -t "$REGISTRY/aisha-nginx-webhook:$TAG" .
}

push_images() {
    step "pushing images to $REGISTRY"
    docker push "$REGISTRY/aisha-webhook-api:$TAG"
    docker push "$REGISTRY/aisha-nginx-webhook:$TAG"
}

# Waits until a container's health check says healthy. Fails (with the
# container's last log lines) when it says unhealthy, when the container
# stops, or after HEALTH_TIMEOUT seconds.
wait_healthy() {
    local container=$1 waited=0 state
    step "waiting for $container to be healthy (up to ${HEALTH_TIMEOUT}s)"
    while :; do
        state=$(docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' "$container" 2>/dev/null || echo missing)
        case "$state" in
        healthy)
            echo "    $container healthy after ${waited}s"
            return 0
            ;;
        unhealthy | exited | dead | missing)
            show_failure "$container" "is $state"
            return 1
            ;;
        esac
        if [ "$waited" -ge "$HEALTH_TIMEOUT" ]; then
            show_failure "$container" "is still '$state' after ${HEALTH_TIMEOUT}s"
            return 1
        fi
        sleep "$HEALTH_INTERVAL"
        waited=$((waited + HEALTH_INTERVAL))
    done
}

show_failure() {
    printf 'error: %s %s; its last log lines:\n' "$1" "$2" >&2
    docker logs --tail 50 "$1" >&2 || true
}

# The options both image scripts take (each script's usage lists them):
# sets TAG (exported, default: the commit), REGISTRY (exported), ENV_FILE,
# HEALTH_TIMEOUT, BUILD, PUSH and PROFILES (compose --profile arguments).
# Calls the script's `usage` for --help and for anything unknown.
parse_image_options() {
    TAG="" BUILD=1 PUSH=1 PROFILES=()
    while [ $# -gt 0 ]; do
        case "$1" in
        --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
        --registry) REGISTRY=${2:?--registry needs a value}; shift 2 ;;
        --env-file) ENV_FILE=${2:?--env-file needs a value}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-push) PUSH=0; shift ;;
        --profile) PROFILES+=(--profile "${2:?--profile needs a value}"); shift 2 ;;
        --timeout) HEALTH_TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    TAG=${TAG:-$(default_tag)}
    export TAG REGISTRY
}

# Builds and pushes the images (unless --no-build / --no-push), or pulls
# them with --no-build.
provide_images() {
    if [ "$BUILD" = 1 ]; then
        build_images
        if [ "$PUSH" = 1 ]; then
            push_images
        fi
    else
        step "pulling images"
        compose "${PROFILES[@]}" pull "$@"
    fi
}
