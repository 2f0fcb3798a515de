# Chromium for the web app's browser tests (tests/test_web_browser.py): Debian's package, driven by
# Playwright for Python (a dev dependency). `playwright install` is never run: it would download.
section "install: chromium for the browser tests (if missing)"
command -v chromium > /dev/null || apt_install chromium
chromium --version
