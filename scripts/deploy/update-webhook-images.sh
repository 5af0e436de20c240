#!/usr/bin/env bash
# Rolling update of the webhook cluster to new images: build and push (or
# pull) the tag, then replace one API instance at a time, waiting for each
# to be healthy before touching the next, so nginx always has one instance
# to send webhooks to; nginx itself last.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage: scripts/deploy/update-webhook-images.sh [options]

Replaces aisha-webhook-api-1, then aisha-webhook-api-2, then
aisha-nginx-webhook with images of the given tag, one at a time, each only
after the previous one is healthy; nginx reloads after each instance (it
resolves the instances' names when it loads its configuration, and a new
container has a new address). Stops at the first unhealthy container
(the others keep serving). Run from the repository root.

Options:
  --tag TAG          image tag (default: the current commit, short)
  --registry R       image registry (default: REGISTRY from the env file, e.g. 192.168.0.4:5000)
  --env-file FILE    environment file (default: prod.env)
  --no-build         do not build; pull TAG from the registry
  --no-push          build, but do not push
  --insecure-registry  the registry speaks plain HTTP (podman: --tls-verify=false;
                     Docker: list it in the daemon's insecure-registries)
  --local            the cluster runs with docker-compose.webhook.local.yml
  --timeout SECONDS  how long to wait for each health check (default: 180)
  -h, --help         this text

To go back, run it again with the previous tag and --no-build.

Environment: DOCKER (docker or podman; default: whichever runs), COMPOSE,
COMPOSE_FILE, HEALTH_TIMEOUT, BUILD_CA (as for webhook-complete.sh).
USAGE
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/deploy/lib.sh
. "$here/lib.sh"

parse_image_options "$@"

require_docker
require_files
step "updating to tag $TAG from $REGISTRY"

provide_images

ensure_network

for service in "${API_SERVICES[@]}" "$NGINX_SERVICE"; do
    step "replacing $service"
    compose up -d --no-deps "$service"
    wait_healthy "$service" || die "update to $TAG stopped: $service is not healthy (the containers after it still run the old images)"
    if [ "$service" != "$NGINX_SERVICE" ]; then
        reload_nginx
    fi
done

step "updated to $TAG"
