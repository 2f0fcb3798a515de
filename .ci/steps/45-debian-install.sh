# The README's first command on a stock Debian 12 / Raspberry Pi OS: from the SYSTEM Python
# (/usr/bin/python3, where `pip install` is refused as externally managed) in a fresh folder.
# It runs the command's install part as written, then checks the installed CLI; the final
# `darkstar up --demo` serves forever, so it is left out here (tests/test_demo.py runs the demo).
section "install: the README's first command from the system Python"
apt_install python3-venv
first_command=$(grep -m1 -E '^python3 -m venv .* darkstar up --demo$' README.md)
install_part=${first_command% && .uv/bin/uv run darkstar up --demo}
[[ $install_part != "$first_command" ]] || { echo "README's first command changed shape: $first_command" >&2; exit 1; }
debian_dir=$(mktemp -d "${TMPDIR:-/tmp}/darkstar-debian.XXXXXX")
tar --exclude=./.venv --exclude=./.uv --exclude=./var -cf - . | tar -xf - -C "$debian_dir"
(
    cd "$debian_dir"
    if /usr/bin/python3 -m pip install --dry-run uv==0.13.8 > /dev/null 2>&1; then
        echo "note: this machine's system pip is not externally managed"
    else
        echo "system pip refuses installs (externally-managed-environment), as on stock Debian 12"
    fi
    PATH="/usr/bin:/bin" bash -c "$install_part" < /dev/null
    PATH="/usr/bin:/bin" .uv/bin/uv run --frozen darkstar --version
    PATH="/usr/bin:/bin" .uv/bin/uv run --frozen python -c "import sys, matplotlib; print('venv python', sys.version.split()[0], 'at', sys.executable)"
)
rm -rf "$debian_dir"
