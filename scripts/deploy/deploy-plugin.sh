#!/usr/bin/env bash
# Deploys a plugin to the running cluster without rebuilding any image:
# pushes the component and its manifest to the OCI registry, has one
# instance deploy it from there (validated, compiled, stored, activated),
# and waits until every instance runs the new version. Also rolls back.
set -euo pipefail

usage() {
    cat <<'USAGE'
Usage:
  scripts/deploy/deploy-plugin.sh [options] <component.wasm> <registry/repository:tag>
  scripts/deploy/deploy-plugin.sh [options] --from-registry <registry/repository:tag>
  scripts/deploy/deploy-plugin.sh [options] --rollback <plugin-name>

The first form pushes the component (with the manifest beside it, or
--manifest) and activates it; the second activates an artifact already in
the registry; the third makes the previously active version active again.
Every form waits until each instance has loaded the active version.

Options:
  --manifest FILE    the plugin's manifest (default: the .toml beside the .wasm)
  --insecure-http    the registry speaks plain HTTP
  --image IMAGE      the host image used to push (default: $REGISTRY/webhook-api:$TAG,
                     REGISTRY from the environment or prod.env, TAG default latest)
  --timeout SECONDS  how long to wait for every instance (default: 180)
  -h, --help         this text

Registry credentials: OCI_USERNAME and OCI_PASSWORD in the environment.
The instances use their own ADMIN_TOKEN (from prod.env).
USAGE
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/deploy/lib.sh
. "$here/lib.sh"

manifest=""
insecure=()
image=""
mode=push
positional=()
while [ $# -gt 0 ]; do
    case "$1" in
    --manifest) manifest=${2:?--manifest needs a value}; shift 2 ;;
    --insecure-http) insecure=(--insecure-http); shift ;;
    --image) image=${2:?--image needs a value}; shift 2 ;;
    --timeout) HEALTH_TIMEOUT=${2:?--timeout needs a value}; shift 2 ;;
    --from-registry) mode=registry; shift ;;
    --rollback) mode=rollback; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; die "unknown option: $1" ;;
    *) positional+=("$1"); shift ;;
    esac
done

require_docker
first=${API_SERVICES[0]}

# Runs the host's CLI inside an instance (its ADMIN_TOKEN, its network).
host_cli() {
    local container=$1
    shift
    docker exec -e OCI_USERNAME -e OCI_PASSWORD "$container" webhook-host "$@"
}

# Waits until every instance reports the active version of $1 as loaded.
wait_loaded() {
    local name=$1 waited=0 container line active loaded
    for container in "${API_SERVICES[@]}"; do
        step "waiting for $container to load the active $name"
        while :; do
            line=$(host_cli "$container" plugin list | awk -v n="$name" '$1 == n { print $2, $3 }')
            read -r active loaded <<<"${line:-- -}"
            if [ "$active" != "-" ] && [ "$active" = "$loaded" ]; then
                echo "    $container runs $name $active"
                break
            fi
            if [ "$waited" -ge "$HEALTH_TIMEOUT" ]; then
                die "$container still runs $name '${loaded}' (active: '${active}') after ${HEALTH_TIMEOUT}s; see: docker logs $container"
            fi
            sleep "$HEALTH_INTERVAL"
            waited=$((waited + HEALTH_INTERVAL))
        done
    done
}

case "$mode" in
push)
    [ ${#positional[@]} -eq 2 ] || { usage >&2; die "expected <component.wasm> <registry/repository:tag>"; }
    component=${positional[0]}
    reference=${positional[1]#oci://}
    [ -f "$component" ] || die "$component not found"
    manifest=${manifest:-${component%.wasm}.toml}
    [ -f "$manifest" ] || die "manifest $manifest not found (pass --manifest)"
    name=$(sed -n 's/^name *= *"\([^"]*\)".*/\1/p' "$manifest" | head -n 1)
    [ -n "$name" ] || die "$manifest has no name"
    REGISTRY=${REGISTRY:-$(env_file_value REGISTRY)}
    image=${image:-$REGISTRY/$API_IMAGE:${TAG:-latest}}
    dir=$(cd "$(dirname "$component")" && pwd)
    mdir=$(cd "$(dirname "$manifest")" && pwd)
    step "pushing $name to $reference"
    docker run --rm --network host -e OCI_USERNAME -e OCI_PASSWORD \
        -v "$dir:/plugin/component:ro" -v "$mdir:/plugin/manifest:ro" \
        --entrypoint webhook-host "$image" \
        plugin push "/plugin/component/$(basename "$component")" "$reference" \
        --manifest "/plugin/manifest/$(basename "$manifest")" "${insecure[@]}"
    step "deploying oci://$reference through $first"
    host_cli "$first" plugin deploy "oci://$reference" "${insecure[@]}"
    wait_loaded "$name"
    ;;
registry)
    [ ${#positional[@]} -eq 1 ] || { usage >&2; die "expected <registry/repository:tag>"; }
    reference=${positional[0]#oci://}
    step "deploying oci://$reference through $first"
    output=$(host_cli "$first" plugin deploy "oci://$reference" "${insecure[@]}")
    echo "$output"
    wait_loaded "${output%% *}"
    ;;
rollback)
    [ ${#positional[@]} -eq 1 ] || { usage >&2; die "expected <plugin-name>"; }
    step "rolling back ${positional[0]} through $first"
    host_cli "$first" plugin rollback "${positional[0]}"
    wait_loaded "${positional[0]}"
    ;;
esac
step "done"
