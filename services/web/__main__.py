"""`python -m services.web --site SITE.yaml [--port N]`: the web app on its own (default: the dashboard port)."""

import sys

from services.web.service import WebService
from shared.runtime import run_one

if __name__ == "__main__":
    sys.exit(run_one(WebService))
