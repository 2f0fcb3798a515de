"""`python -m services.planner --site SITE.yaml`: run the planner service on its own."""

import sys

from services.planner.service import PlannerService
from shared.runtime import run_one

if __name__ == "__main__":
    sys.exit(run_one(PlannerService))
