"""Aurora: load and PV forecasting (pvlib physics + LightGBM quantiles), baselines, metrics."""

from shared.forecast.models import (
    FORECAST_COLUMNS,
    ForecastError,
    ForecastModels,
    replace_if_better,
    score_models,
)

__all__ = ["FORECAST_COLUMNS", "ForecastError", "ForecastModels", "replace_if_better", "score_models"]
