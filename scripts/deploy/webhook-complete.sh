#!/usr/bin/env bash
# Full deployment of the webhook cluster: build and push the images, make
# sure the network exists, stop the old containers, start the new ones and
# wait until every container's health check passes. Exits non-zero, with
# the failing container's log, when one does not become healthy in time.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/deploy/webhook-complete.sh [options]

Builds and pushes the webhook-api and nginx-webhook images (tagged TAG and
latest), then replaces the running cluster (docker-compose.webhook.prod.yml)
and checks its health.
Run from the repository root.

Options:
  --tag TAG          image tag (default: the current commit, short)
  --registry R       image registry (default: REGISTRY from the env file, e.g. 192.168.0.4:5000)
  --env-file FILE    environment file (default: prod.env)
  --no-build         do not build; pull TAG from the registry instead
  --no-push          build, but do not push (single-box setups)
  --insecure-registry  the registry speaks plain HTTP (podman: --tls-verify=false;
                     Docker: list it in the daemon's insecure-registries)
  --local            also run PostgreSQL, MinIO and Redis (docker-compose.webhook.local.yml)
  --timeout SECONDS  how long to wait for each health check (default: 180)
  -h, --help         this text

Environment: DOCKER (docker or podman; default: whichever runs), COMPOSE
(e.g. "docker-compose"), COMPOSE_FILE, HEALTH_TIMEOUT, BUILD_CA (a CA
bundle for the build's downloads, behind a TLS-inspecting proxy).
USAGE
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/deploy/lib.sh
. "$here/lib.sh"

parse_image_options "$@"

require_docker
require_files
step "deploying tag $TAG from $REGISTRY"

provide_images

ensure_network

step "stopping the old containers"
compose down --remove-orphans

step "starting the new containers"
compose up -d

for container in "${API_SERVICES[@]}" "$NGINX_SERVICE"; do
    wait_healthy "$container" || die "deployment of $TAG failed: $container is not healthy"
done

step "deployed $TAG: webhooks at https://<domain>:8443/api/v1/avatar/status_update"
