# Shared by the deploy scripts (sourced, not run).
# shellcheck shell=bash

COMPOSE_FILE=${COMPOSE_FILE:-docker-compose.webhook.prod.yml}
# The single-box services (PostgreSQL, MinIO, Redis), added by --local.
LOCAL_COMPOSE_FILE=${LOCAL_COMPOSE_FILE:-docker-compose.webhook.local.yml}
ENV_FILE=${ENV_FILE:-prod.env}
NETWORK=${NETWORK:-aisha_webhook_cluster}
# The image repositories, in $REGISTRY.
# shellcheck disable=SC2034
API_IMAGE=webhook-api
# shellcheck disable=SC2034
NGINX_IMAGE=nginx-webhook
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

# A value from the env file (NAME=value lines), empty when absent.
env_file_value() {
    [ -f "$ENV_FILE" ] || return 0
    sed -n "s/^$1=//p" "$ENV_FILE" | tail -n 1
}

# The container engine. DOCKER names the CLI (docker or podman); without
# it, docker when it reaches a Docker engine, else podman. The scripts call
# `docker`: with podman that is podman, whose commands are the same.
require_docker() {
    if [ -z "${DOCKER:-}" ]; then
        if command -v docker >/dev/null && docker_engine_is_docker; then
            DOCKER=docker
        elif command -v podman >/dev/null; then
            DOCKER=podman
        else
            die "neither docker (with a running engine) nor podman is available"
        fi
    fi
    command -v "$DOCKER" >/dev/null || die "$DOCKER is not installed or not on PATH"
    export DOCKER
    if [ "$DOCKER" = podman ] && [ -z "${DOCKER_HOST:-}" ]; then
        # docker-compose talks to podman's Docker-compatible API.
        local socket
        socket=$(podman info --format '{{.Host.RemoteSocket.Path}}' 2>/dev/null || true)
        if [ -S "$socket" ]; then
            export DOCKER_HOST=unix://$socket
        fi
    fi
}

# Whether `docker` reaches an engine that is Docker itself (not podman's
# Docker-compatible API).
docker_engine_is_docker() {
    local components
    components=$(command docker version --format '{{range .Server.Components}}{{.Name}} {{end}}' 2>/dev/null) || return 1
    ! grep -qi podman <<<"$components"
}

docker() {
    command "${DOCKER:-docker}" "$@"
}

# Options podman needs and Docker does not have: plain HTTP to the registry
# (Docker reads that from its daemon's insecure-registries).
registry_options() {
    if [ "${DOCKER:-docker}" = podman ] && [ "${INSECURE_REGISTRY:-0}" = 1 ]; then
        echo --tls-verify=false
    fi
}

# `docker compose` (plugin) when present, else `docker-compose`; COMPOSE
# overrides, e.g. COMPOSE=docker-compose.
compose() {
    local -a cmd
    if [ -n "${COMPOSE:-}" ]; then
        read -r -a cmd <<<"$COMPOSE"
    elif [ "${DOCKER:-docker}" = docker ] && command docker compose version >/dev/null 2>&1; then
        cmd=(command docker compose)
    elif command -v docker-compose >/dev/null; then
        cmd=(docker-compose)
    else
        die "neither 'docker compose' nor 'docker-compose' is available"
    fi
    local -a files=(-f "$COMPOSE_FILE")
    if [ "${LOCAL:-0}" = 1 ]; then
        files+=(-f "$LOCAL_COMPOSE_FILE")
    fi
    "${cmd[@]}" "${files[@]}" --env-file "$ENV_FILE" "$@"
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

# Builds one image as REGISTRY/name:TAG and :latest, labelled with TAG.
# BUILD_CA (a CA bundle file) reaches the cargo step as the build secret
# build_ca, for builds behind a TLS-inspecting proxy; it is not kept.
build_image() {
    local name=$1 dockerfile=$2
    local -a options=(-f "$dockerfile" -t "$REGISTRY/$name:$TAG" -t "$REGISTRY/$name:latest"
        --label "org.opencontainers.image.revision=$TAG")
    if [ "${DOCKER:-docker}" = podman ]; then
        # OCI images have no HEALTHCHECK.
        options+=(--format docker)
    fi
    if [ -n "${BUILD_CA:-}" ]; then
        [ -r "$BUILD_CA" ] || die "BUILD_CA: $BUILD_CA is not readable"
        options+=(--secret "id=build_ca,src=$BUILD_CA")
    fi
    step "building $REGISTRY/$name:$TAG"
    docker build "${options[@]}" .
}

build_images() {
    build_image "$API_IMAGE" docker/Dockerfile.webhook-api
    build_image "$NGINX_IMAGE" docker/nginx/Dockerfile
}

push_images() {
    local name tag
    step "pushing images to $REGISTRY"
    for name in "$API_IMAGE" "$NGINX_IMAGE"; do
        for tag in "$TAG" latest; do
            # shellcheck disable=SC2046
            docker push $(registry_options) "$REGISTRY/$name:$tag"
        done
    done
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

# nginx looks the instances' addresses up when it loads its configuration:
# after an instance's container is replaced (a new address), SIGHUP makes it
# reload, gracefully, and find the new one.
reload_nginx() {
    if [ "$(docker inspect --format '{{.State.Status}}' "$NGINX_SERVICE" 2>/dev/null)" = running ]; then
        docker kill --signal HUP "$NGINX_SERVICE" >/dev/null
        echo "    $NGINX_SERVICE reloaded"
    fi
}

show_failure() {
    printf 'error: %s %s; its last log lines:\n' "$1" "$2" >&2
    docker logs --tail 50 "$1" >&2 || true
}

# The options both image scripts take (each script's usage lists them):
# sets TAG (exported, default: the commit), REGISTRY (exported; default:
# the env file's REGISTRY), ENV_FILE, HEALTH_TIMEOUT, BUILD, PUSH, LOCAL and
# INSECURE_REGISTRY. Calls the script's `usage` for --help and for anything
# unknown.
parse_image_options() {
    TAG="" BUILD=1 PUSH=1 LOCAL=0 INSECURE_REGISTRY=${INSECURE_REGISTRY:-0}
    while [ $# -gt 0 ]; do
        case "$1" in
        --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
        --registry) REGISTRY=${2:?--registry needs a value}; shift 2 ;;
        --env-file) ENV_FILE=${2:?--env-file needs a value}; shift 2 ;;
        --no-build) BUILD=0; shift ;;
        --no-push) PUSH=0; shift ;;
        --local) LOCAL=1; shift ;;
        --insecure-registry) INSECURE_REGISTRY=1; shift ;;
        --timeout) HEALTH_TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
        esac
    done
    TAG=${TAG:-$(default_tag)}
    REGISTRY=${REGISTRY:-$(env_file_value REGISTRY)}
    [ -n "$REGISTRY" ] || die "no registry: set REGISTRY in $ENV_FILE (e.g. 192.168.0.4:5000) or pass --registry"
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
        local name
        for name in "$API_IMAGE" "$NGINX_IMAGE"; do
            # shellcheck disable=SC2046
            docker pull $(registry_options) "$REGISTRY/$name:$TAG"
        done
    fi
}
