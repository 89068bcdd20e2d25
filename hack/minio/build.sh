#!/usr/bin/env bash
# Builds the MinIO server that tests use as a real S3 endpoint on 127.0.0.1, from the Go module
# pinned in hack/minio/go.mod, and caches it under
#   ${MMZERO_MINIO_CACHE:-~/.cache/mmzero/minio}/<key>/bin/minio
# where <key> hashes go.mod/go.sum and the build flags: a second run is a no-op.
# Measured on the 2-core dev VM: 2 min 17 s with the module cache warm (benchmarks/RESULTS.md).
#
# Usage: hack/minio/build.sh    build if needed; print the binary's path on stdout
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
build_flags=(-trimpath "-ldflags=-s -w")
key="$(cat "$here/go.mod" "$here/go.sum" <(printf '%s\n' "${build_flags[@]}") \
    | grep -v '^//' | sha256sum | cut -c1-16)"
cache_root="${MMZERO_MINIO_CACHE:-$HOME/.cache/mmzero/minio}"
binary="$cache_root/$key/bin/minio"

if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi
mkdir -p "$cache_root/$key"
exec 9>"$cache_root/$key/lock"  # a second build of the same key waits for the first
flock 9
if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "error: Go is not installed and no cached MinIO is in $binary;" \
        "install Go >= 1.26 and run hack/minio/build.sh" >&2
    exit 1
fi
echo "building MinIO $(awk '$1 == "github.com/minio/minio" {print $2}' "$here/go.mod")" \
    "with $(go env GOVERSION) into $binary" >&2
staging="$(mktemp -d "$cache_root/$key/bin.tmp.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
start=$SECONDS
(cd "$here" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
    go build "${build_flags[@]}" -o "$staging/" tool)
rm -rf "$cache_root/$key/bin"
mv "$staging" "$cache_root/$key/bin"
trap - EXIT
echo "built MinIO in $((SECONDS - start)) s" >&2
echo "$binary"
