"""`python -m services.executor --site SITE.yaml`: run the executor service on its own."""

import sys

from services.executor.service import ExecutorService
from shared.runtime import run_one

if __name__ == "__main__":
    sys.exit(run_one(ExecutorService))
