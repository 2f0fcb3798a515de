"""Aurora: load and PV forecasting (pvlib physics + LightGBM quantiles), baselines, metrics."""

from shared.forecast.models import (
    FORECAST_COLUMNS,
    ForecastError,
    ForecastModels,
    score_models,
)

__all__ = ["FORECAST_COLUMNS", "ForecastError", "ForecastModels", "score_models"]
