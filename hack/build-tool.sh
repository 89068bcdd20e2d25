#!/usr/bin/env bash
# Builds the tool a wrapper module under hack/ pins (hack/minio: the MinIO server for the S3
# tests; hack/helm: helm for the chart tests) and caches it under
#   ${MMZERO_TOOL_CACHE:-~/.cache/mmzero/tools}/<module dir>/<key>/bin/<binary>
# where <key> hashes the module's go.mod/go.sum and the build flags: a second run is a no-op.
# Cold and warm build times are in benchmarks/RESULTS.md.
#
# Usage: hack/build-tool.sh minio|helm    build if needed; print the binary's path on stdout
set -euo pipefail

name="${1:?usage: hack/build-tool.sh MODULE_DIR (minio or helm)}"
here="$(cd "$(dirname "$0")" && pwd)/$name"
[[ -f "$here/go.mod" ]] || { echo "error: no wrapper module $here/go.mod" >&2; exit 2; }
build_flags=(-trimpath "-ldflags=-s -w")
key="$(cat "$here/go.mod" "$here/go.sum" <(printf '%s\n' "${build_flags[@]}") \
    | grep -v '^//' | sha256sum | cut -c1-16)"
cache="${MMZERO_TOOL_CACHE:-$HOME/.cache/mmzero/tools}/$name/$key"
binary="$cache/bin/$name"

if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/lock"  # a second build of the same key waits for the first
flock 9
if [[ -x "$binary" ]]; then
    echo "$binary"
    exit 0
fi
if ! command -v go >/dev/null 2>&1; then
    echo "error: Go is not installed and no cached $name is in $binary;" \
        "install Go >= 1.26 and run hack/build-tool.sh $name" >&2
    exit 1
fi
echo "building $name from hack/$name/go.mod with $(go env GOVERSION) into $binary" >&2
staging="$(mktemp -d "$cache/bin.tmp.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
start=$SECONDS
(cd "$here" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
    go build "${build_flags[@]}" -o "$staging/" tool)
rm -rf "$cache/bin"
mv "$staging" "$cache/bin"
trap - EXIT
echo "built $name in $((SECONDS - start)) s" >&2
echo "$binary"
