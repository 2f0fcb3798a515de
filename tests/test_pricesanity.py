"""Price sanity: an outlying curve is held (previous one stays) until a second fetch confirms it."""

from __future__ import annotations

from shared.pricesanity import PriceSanity

STARTS = [f"2025-08-{d:02d}T{h:02d}:00" for d in (1, 2) for h in range(24)][:24]


def _sanity() -> PriceSanity:
    sanity = PriceSanity()
    for day in range(7):  # a week of ordinary prices, 0.05-0.45 per kWh
        sanity.accepted([0.05 + 0.4 * ((h + day) % 24) / 23 for h in range(96)])
    return sanity


def test_an_ordinary_curve_passes() -> None:
    assert _sanity().check(STARTS, [0.1 + 0.01 * h for h in range(24)]).publish


def test_a_99_eur_slot_is_held_then_published_only_when_a_second_fetch_says_the_same() -> None:
    sanity = _sanity()
    spiked = [0.2] * 24
    spiked[18] = 99.0
    first = sanity.check(STARTS, spiked)
    assert not first.publish and "held" in first.why and "99.000" in first.why
    # a different (corrected) response replaces the held one and passes on its own
    assert sanity.check(STARTS, [0.2] * 24).publish
    # the same spike twice in a row: confirmed
    assert not sanity.check(STARTS, spiked).publish
    second = sanity.check(STARTS, spiked)
    assert second.publish and "confirmed" in second.why


def test_without_a_days_history_nothing_is_held() -> None:
    assert PriceSanity().check(STARTS, [50.0] * 24).publish


def test_a_restarted_forecaster_compares_with_the_stored_prices_not_with_nothing(tmp_path) -> None:
    from datetime import datetime, timedelta, timezone

    from services.forecaster.service import ForecasterService
    from shared.clock import ManualClock
    from shared.contracts import PriceSlot, PricesMsg
    from shared.storage import Store
    from tests.conftest import make_site

    site = make_site(tmp_path, {"embedded": True})
    store = Store.open(site.database.url.get_secret_value())
    now = datetime(2025, 8, 3, 12, tzinfo=timezone.utc)
    start = now - timedelta(days=2)
    store.store_prices(PricesMsg(site_id=site.site_id, area="SE4", currency="EUR", resolution_minutes=15, slots=[
        PriceSlot(start=start + timedelta(minutes=15 * i), import_price_per_kwh=0.05 + 0.3 * (i % 96) / 95,
                  export_price_per_kwh=0.02) for i in range(2 * 96)]))
    forecaster = ForecasterService(site, store=store, clock=ManualClock(now))
    forecaster._seed_price_sanity()  # what on_start does first
    spiked = [0.2] * 24
    spiked[18] = 99.0
    verdict = forecaster.price_sanity.check(STARTS, spiked)
    assert not verdict.publish and "held" in verdict.why  # without the seed a fresh start let it through
    store.close()
