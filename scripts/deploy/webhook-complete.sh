#!/usr/bin/env bash
# Full deployment of the webhook cluster: build and push the images, make
# sure the network exists, stop the old containers, start the new ones and
# wait until every container's health check passes. Exits non-zero, with
# the failing container's log, when one does not become healthy in time.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/deploy/webhook-complete.sh [options]

Builds and pushes aisha-webhook-api and aisha-nginx-webhook, then replaces
the running cluster (docker-compose.webhook.prod.yml) and checks its health.
Run from the repository root.

Options:
  --tag TAG          image tag (default: the current commit, short)
  --registry R       image registry/namespace (default: $REGISTRY or registry.example.com/aisha)
  --env-file FILE    environment file (default: prod.env)
  --no-build         do not build; pull TAG from the registry instead
  --no-push          build, but do not push (single-box setups)
  --profile NAME     also start a compose profile (e.g. local: PostgreSQL, MinIO, Redis)
  --timeout SECONDS  how long to wait for each health check (default: 180)
  -h, --help         this text

Environment: COMPOSE (e.g. "docker-compose"), COMPOSE_FILE, HEALTH_TIMEOUT.
USAGE
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/deploy/lib.sh
. "$here/lib.sh"

parse_image_options "$@"

require_docker
require_files
step "deploying tag $TAG from $REGISTRY"

# No service names: every image.
# shellcheck disable=SC2119
provide_images

ensure_network

step "stopping the old containers"
compose "${PROFILES[@]}" down --remove-orphans

step "starting the new containers"
compose "${PROFILES[@]}" up -d

for container in "${API_SERVICES[@]}" "$NGINX_SERVICE"; do
    wait_healthy "$container" || die "deployment of $TAG failed: $container is not healthy"
done

step "deployed $TAG: webhooks at https://<domain>:8443/api/v1/avatar/status_update"
