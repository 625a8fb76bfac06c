#!/usr/bin/env bash
# Scan the rendered kustomize overlays (and the Dockerfile) with checkov.
#
#   k8s/checkov.sh            # all overlays
#   k8s/checkov.sh prod       # one overlay
#
# checkov is heavy (a few hundred MB of dependencies), so it is not in the
# project's venv: this script installs it once into k8s/.venv-checkov
# (override with CHECKOV_VENV) and reuses it afterwards. Skipped checks
# and why: k8s/.checkov.yaml. Exit status is non-zero if any other check fails.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
venv="${CHECKOV_VENV:-$here/.venv-checkov}"
python="${PYTHON:-python3}"

if [[ ! -x "$venv/bin/checkov" ]]; then
  echo "installing checkov into $venv" >&2
  "$python" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "checkov>=3.2,<4"
fi

if [[ $# -gt 0 ]]; then
  overlays=("$@")
else
  overlays=()
  for d in "$here"/overlays/*/; do overlays+=("$(basename "$d")"); done
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for o in "${overlays[@]}"; do
  kubectl kustomize "$here/overlays/$o" > "$out/$o.yaml"
done

status=0
echo "== checkov: kubernetes (${overlays[*]})"
"$venv/bin/checkov" --config-file "$here/.checkov.yaml" \
  --framework kubernetes --directory "$out" || status=$?
echo "== checkov: Dockerfile"
"$venv/bin/checkov" --config-file "$here/.checkov.yaml" \
  --framework dockerfile --file "$root/Dockerfile" || status=$?
exit "$status"
