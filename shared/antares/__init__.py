"""Antares: the learned policy (episodes from MPC replays, features, LightGBM models, money evaluation).

See docs/antares.md for the model contract.
"""

from shared.antares.episodes import SIM_SYSTEM_ID, TARGETS, EpisodeSet, record_episodes, time_split
from shared.antares.features import FEATURES, DayInputs, decision_features

__all__ = ["FEATURES", "SIM_SYSTEM_ID", "TARGETS", "DayInputs", "EpisodeSet", "decision_features",
           "record_episodes", "time_split"]
