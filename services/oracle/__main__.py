"""`python -m services.oracle --site SITE.yaml`: run the oracle service on its own."""

import sys

from services.oracle.service import OracleService
from shared.runtime import run_one

if __name__ == "__main__":
    sys.exit(run_one(OracleService))
