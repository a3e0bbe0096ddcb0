#!/usr/bin/env bash
# Builds the local control plane from Go modules, once: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl and kwok. Binaries land in a cache folder keyed
# by the pinned versions (versions.env), so a second run finds them and takes a second.
#
#   devtools/controlplane/build.sh            # build what is missing, print the bin folder
#   CUTOVER_CACHE_DIR=/path ... build.sh      # cache somewhere else (default ~/.cache/cutover)
#   CUTOVER_KUBERNETES_VERSION=v1.36.3 build.sh   # another Kubernetes than the pinned one
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
# Another Kubernetes release to try, without editing the pin (cluster.py reads it too).
KUBERNETES_VERSION="${CUTOVER_KUBERNETES_VERSION:-$KUBERNETES_VERSION}"
if [[ ! "$KUBERNETES_VERSION" =~ ^v1\.[0-9]+\.[0-9]+$ ]]; then
  echo "build.sh: CUTOVER_KUBERNETES_VERSION must be a release such as v1.36.3, not '$KUBERNETES_VERSION'" >&2
  exit 2
fi

cache_root="${CUTOVER_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cutover}/controlplane"
bin="$cache_root/bin/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
work="$cache_root/work"
mkdir -p "$bin" "$work"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local

step() { printf '[controlplane] %s\n' "$*" >&2; }
have() { [ -x "$bin/$1" ]; }

# One wrapper module per project: k8s, etcd and kwok share dependencies at different versions,
# and one module would bump them all to the highest.
build_kubernetes() {
  local wanted=(kube-apiserver kube-controller-manager kube-scheduler kubectl) missing=() name
  for name in "${wanted[@]}"; do have "$name" || missing+=("$name"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  local mod="$work/kubernetes-$KUBERNETES_VERSION" src staging_version
  mkdir -p "$mod"
  step "downloading k8s.io/kubernetes $KUBERNETES_VERSION (about 60 MB)"
  src="$(cd "$mod" && GOFLAGS= go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  # kubernetes v1.X.Y publishes its staging modules as v0.X.Y.
  staging_version="v0.${KUBERNETES_VERSION#v1.}"
  {
    echo "module cutover.local/controlplane/kubernetes"
    echo
    # GODEBUG defaults come from the main module: copy k/k's go and godebug lines.
    grep -E '^(go|godebug) ' "$src/go.mod"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    # Every staging module, used or not, or resolution stops at their v0.0.0 placeholders.
    sed -n 's#^[[:space:]]*\(k8s.io/[^[:space:]]*\) => \./staging/src/.*#\1#p' "$src/go.mod" \
      | sort -u | sed "s#.*#replace & => & $staging_version#"
  } >"$mod/go.mod"
  local major minor
  major="${KUBERNETES_VERSION#v}"; major="${major%%.*}"
  minor="${KUBERNETES_VERSION#v*.}"; minor="${minor%%.*}"
  local ldflags="-s -w" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=$major"
    ldflags+=" -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
    ldflags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  step "building ${missing[*]} $KUBERNETES_VERSION (cold: about 13 min on 2 cores, measured)"
  local targets=()
  for name in "${missing[@]}"; do targets+=("k8s.io/kubernetes/cmd/$name"); done
  (cd "$mod" && go_build_with_progress "${targets[@]}" -- -ldflags "$ldflags" -o "$bin/")
}

# `go build` is silent for minutes: count the packages it compiles against the total instead.
go_build_with_progress() {
  local targets=() flags=()
  while [ "$1" != "--" ]; do targets+=("$1"); shift; done
  shift
  flags=("$@")
  local total
  total="$(go list -deps "${targets[@]}" | wc -l)"
  # -v names each package as it is compiled; compiler errors come as "# pkg" then "file.go:…".
  go build -v -trimpath "${flags[@]}" "${targets[@]}" 2>&1 | {
    local n=0 line
    while IFS= read -r line; do
      case "$line" in
        "# "*|*.go:*|go:\ *) printf '%s\n' "$line" >&2 ;;
        *) n=$((n + 1))
           if [ $((n % 100)) -eq 0 ]; then step "compiled $n of at most $total packages"; fi ;;
      esac
    done
    true
  }
}

build_etcd() {
  have etcd && return 0
  local mod="$work/etcd-$ETCD_VERSION" src
  mkdir -p "$mod"
  step "downloading go.etcd.io/etcd/server/v3 $ETCD_VERSION"
  src="$(cd "$mod" && GOFLAGS= go mod download -json "go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  {
    echo "module cutover.local/controlplane/etcd"
    echo
    grep -E '^go ' "$src/go.mod"
    echo
    echo "require go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    echo
    # etcd's go.mod points its sibling modules at ../api etc.; use their releases instead.
    sed -n 's#^[[:space:]]*\(go.etcd.io/etcd/[^[:space:]]*\) => \.\./.*#\1#p' "$src/go.mod" \
      | sort -u | sed "s#.*#replace & => & $ETCD_VERSION#"
  } >"$mod/go.mod"
  step "building etcd $ETCD_VERSION"
  (cd "$mod" && go_build_with_progress go.etcd.io/etcd/server/v3 -- -ldflags "-s -w" -o "$bin/etcd")
}

build_kwok() {
  have kwok && return 0
  step "building kwok $KWOK_VERSION"
  GOFLAGS= GOBIN="$bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
}

build_etcd
build_kwok
build_kubernetes
step "ready: $bin"
echo "$bin"
