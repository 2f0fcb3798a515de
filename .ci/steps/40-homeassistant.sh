# Home Assistant core in its own venv, outside the repo, for the tests that run a real HA
# (tests/ha_core.py finds it through DARKSTAR_HA_VENV). Sourced by .ci/run; idempotent and
# cached: a venv whose marker names the same HA release and extra requirements is reused.
#
# Which release: Home Assistant 2025.4.4 needs Python 3.13 (present under pyenv on these
# machines). Without 3.13 we fall back to 2024.3.3 on Python 3.11, which needs josepy<2 beside
# it (josepy 2 removed an API acme uses; every HTTP request then answers 500).
# The integrations the tests load (mqtt, recorder, ...) have requirements HA would pip-install
# at start-up; we install them here so HA can start with --skip-pip and no network.

ha_cache_root="${DARKSTAR_HA_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/darkstar}"
ha_py313=""
for candidate in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.13*/bin/python3.13 "$(command -v python3.13 2> /dev/null || true)"; do
    # a pyenv shim may exist without the version being active: ask it to run
    if [[ -n $candidate && -x $candidate ]] && "$candidate" -c "import sys" 2> /dev/null; then ha_py313=$candidate; break; fi
done
if [[ -n $ha_py313 ]]; then
    ha_version=2025.4.4; ha_python=$ha_py313; ha_pins=""
else
    ha_version=2024.3.3; ha_python=$(command -v python3.11 || command -v python3); ha_pins="josepy<2"
fi
# Integrations the tests load whose requirements HA would otherwise pip-install at start-up
# (frontend is loaded by every HA start); their pinned versions are read from the installed
# integrations' manifest.json, so they match the release.
ha_integrations="frontend mqtt recorder image_upload"
ha_venv="$ha_cache_root/homeassistant-$ha_version"
ha_marker="$ha_venv/.darkstar-ha-ready"
ha_want="homeassistant==$ha_version $ha_pins integrations: $ha_integrations"

if [[ -f $ha_marker && "$(cat "$ha_marker")" == "$ha_want" ]] && "$ha_venv/bin/python" -c "import homeassistant" 2> /dev/null; then
    echo "Home Assistant $ha_version venv cached at $ha_venv"
else
    echo "installing Home Assistant $ha_version with $ha_python into $ha_venv"
    command -v uv > /dev/null || pip install -q uv==0.13.8
    rm -rf "$ha_venv"
    mkdir -p "$ha_cache_root"
    uv venv -q -p "$ha_python" "$ha_venv"
    # shellcheck disable=SC2086 - word splitting of the requirement lists is intended
    VIRTUAL_ENV="$ha_venv" uv pip install -q "homeassistant==$ha_version" $ha_pins
    ha_reqs=$("$ha_venv/bin/python" - $ha_integrations <<'PY'
import json, sys
from pathlib import Path
import homeassistant.components as components
root = Path(components.__file__).parent
print("-c", root.parent / "package_constraints.txt", end=" ")  # the pins HA itself installs with
print(" ".join(r for name in sys.argv[1:] for r in json.loads((root / name / "manifest.json").read_text()).get("requirements", [])))
PY
)
    echo "integration requirements: $ha_reqs"
    # shellcheck disable=SC2086
    VIRTUAL_ENV="$ha_venv" uv pip install -q $ha_reqs $ha_pins
    echo "$ha_want" > "$ha_marker"
fi
"$ha_venv/bin/python" -c "import homeassistant.const as c; print('Home Assistant', c.__version__)"
export DARKSTAR_HA_VENV="$ha_venv"
