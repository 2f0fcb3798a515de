"""`python -m services.trainer --site SITE.yaml`: run the trainer service on its own."""

import sys

from services.trainer.service import TrainerService
from shared.runtime import run_one

if __name__ == "__main__":
    sys.exit(run_one(TrainerService))
