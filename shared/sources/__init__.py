"""External data sources (prices, weather): one client object per source, pandas out, clear errors."""

from shared.sources.base import NoDataYet, PriceSeries, SourceClient, SourceError, SourceParseError, SourceUnavailable
from shared.sources.entsoe import BIDDING_ZONES, EntsoeClient, parse_entsoe_a44, parse_entsoe_csv
from shared.sources.nordpool import NordPoolClient, parse_nordpool
from shared.sources.openmeteo import OpenMeteoClient, parse_openmeteo

__all__ = [
    "BIDDING_ZONES", "EntsoeClient", "NoDataYet", "NordPoolClient", "OpenMeteoClient", "PriceSeries",
    "SourceClient", "SourceError", "SourceParseError", "SourceUnavailable", "parse_entsoe_a44",
    "parse_entsoe_csv", "parse_nordpool", "parse_openmeteo",
]
