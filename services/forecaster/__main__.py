"""`python -m services.forecaster --site SITE.yaml`: run the forecaster service on its own."""

import sys

from services.forecaster.service import ForecasterService
from shared.runtime import run_one

if __name__ == "__main__":
    sys.exit(run_one(ForecasterService))
