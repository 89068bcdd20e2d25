#!/usr/bin/env bash
# Builds the local control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# kubectl, kwok) from their upstream Go modules at the versions pinned in the wrapper modules
# hack/cluster/k8s and hack/cluster/etcd, and caches the binaries under
#   ${MMZERO_CLUSTER_CACHE:-~/.cache/mmzero/cluster}/<key>/bin
# where <key> hashes the wrapper go.mod/go.sum files and the build flags: a second run is a no-op.
# Go's own caches stay where `go env GOMODCACHE GOCACHE` puts them (~/go/pkg/mod, ~/.cache/go-build).
#
# Usage: hack/cluster/build.sh                 build if needed; print the bin dir on stdout
#        hack/cluster/build.sh --print-bin-dir print the bin dir only (needs no Go)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
k8s_version="$(awk '$1 == "k8s.io/kubernetes" {print $2}' "$here/k8s/go.mod")"
k8s_minor="${k8s_version#v1.}"
k8s_minor="${k8s_minor%%.*}"
# The Kubernetes release scripts stamp the version with -X; without it the binaries report
# v0.0.0-master and `kubectl version` cannot check the client/server skew.
version_pkg="k8s.io/component-base/version"
ldflags="-s -w -X ${version_pkg}.gitVersion=${k8s_version} -X ${version_pkg}.gitMajor=1"
ldflags+=" -X ${version_pkg}.gitMinor=${k8s_minor} -X ${version_pkg}.gitTreeState=clean"
build_flags=(-trimpath "-ldflags=${ldflags}")
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

# Comment lines are left out of the key, so rewording the wrapper go.mod files rebuilds nothing.
key="$(cat "$here"/k8s/go.mod "$here"/k8s/go.sum "$here"/etcd/go.mod "$here"/etcd/go.sum \
    <(printf '%s\n' "${build_flags[@]}") | grep -v '^//' | sha256sum | cut -c1-16)"
cache_root="${MMZERO_CLUSTER_CACHE:-$HOME/.cache/mmzero/cluster}"
bin_dir="$cache_root/$key/bin"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
    echo "$bin_dir"
    exit 0
fi

complete() {
    local name
    for name in "${binaries[@]}"; do
        [[ -x "$bin_dir/$name" ]] || return 1
    done
}
if complete; then
    echo "cluster binaries up to date in $bin_dir" >&2
    echo "$bin_dir"
    exit 0
fi
# A second build of the same key (another terminal, a test run) waits for the first one.
mkdir -p "$cache_root/$key"
exec 9>"$cache_root/$key/lock"
if ! flock -n 9; then
    echo "waiting for another build.sh of $key to finish" >&2
    flock 9
fi
if complete; then
    echo "$bin_dir"
    exit 0
fi

if ! command -v go >/dev/null 2>&1; then
    echo "error: Go is not installed, and no cached binaries are in $bin_dir;" \
        "install Go >= 1.26 (see go.mod) and run hack/cluster/build.sh" >&2
    exit 1
fi

etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$here/etcd/go.mod")"
kwok_version="$(awk '$1 == "sigs.k8s.io/kwok" {print $2}' "$here/k8s/go.mod")"
echo "building kubernetes $k8s_version, kwok $kwok_version, etcd $etcd_version" \
    "with $(go env GOVERSION) into $bin_dir" >&2

staging="$(mktemp -d "$cache_root/$key/bin.tmp.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"

start=$SECONDS
# etcd shares few packages with Kubernetes, so it is built alongside: it can use CPU that the
# Kubernetes build leaves idle while it waits on its largest packages and links. (No gain could
# be measured on the shared 2-vCPU dev VM; see benchmarks/RESULTS.md.)
(cd "$here/etcd" && go build "${build_flags[@]}" -o "$staging/etcd" go.etcd.io/etcd/server/v3) &
etcd_build=$!
# One `go build` for all Kubernetes binaries and kwok: they share most packages, so each is
# compiled once. `tool` lists the main packages declared in the wrapper go.mod.
k8s_status=0
(cd "$here/k8s" && go build "${build_flags[@]}" -o "$staging/" tool) || k8s_status=$?
wait "$etcd_build"
[[ $k8s_status -eq 0 ]] || exit "$k8s_status"

rm -rf "$bin_dir"
mv "$staging" "$bin_dir"
trap - EXIT
echo "built ${binaries[*]} in $((SECONDS - start)) s into $bin_dir" >&2
echo "$bin_dir"
