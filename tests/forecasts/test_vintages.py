"""Intraday forecast vintages: errors shrink with the lead, later vintages are consistent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasts.error import ForecastError, LeadLevel
from forecasts.supply import SupplyModel
from forecasts.synthetic import synthetic_weather

SITE = "qingyang"
DAYS = 90
FIRST_DAY = pd.Timestamp("2026-03-01", tz="Asia/Shanghai").tz_convert("UTC")
ERROR = ForecastError(
    wind_nrmse=0.15,
    pv_nrmse=0.08,
    correlation_hours=6,
    intraday=(LeadLevel(1, 0.05, 0.04), LeadLevel(6, 0.10, 0.065)),
)
HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def season(config):
    """90 days of 15-minute actual supply at qingyang, the model and its prepared reference."""
    model = SupplyModel({SITE: config.sites[SITE]}, slot_minutes=15)
    end = FIRST_DAY + pd.Timedelta(days=DAYS)
    actual = model.actual({SITE: synthetic_weather(config.sites[SITE], FIRST_DAY, end, 15, 3)})
    return model, actual, model.references(actual)


def _days(actual: pd.DataFrame):
    for day in range(DAYS):
        start = FIRST_DAY + pd.Timedelta(days=day)
        rows = actual[(actual["time"] >= start) & (actual["time"] < start + 24 * HOUR)]
        yield start, rows.reset_index(drop=True)


def _vintage(season, rows, issued_at, error=ERROR):
    model, _, reference = season
    return model.forecast(rows, error, seed=7, reference=reference, issued_at=issued_at)


def test_error_spread_grows_with_the_lead(season, config):
    """The same midday hour forecast 1 h, 6 h and 24 h ahead, over 90 days: RMSE 1 h < 6 h <
    24 h, near the configured levels (wind 5 / 10 / 15 % of capacity)."""
    capacity = config.sites[SITE].wind_capacity_mw
    errors: dict[int, list[np.ndarray]] = {1: [], 6: [], 24: []}
    for start, rows in _days(season[1]):
        window = (rows["time"] >= start + 11 * HOUR) & (rows["time"] < start + 12 * HOUR)
        for lead_h in errors:  # the window's leads run from lead_h - 1 h to lead_h - 15 min
            forecast = _vintage(season, rows, start + 11 * HOUR - (lead_h - 1) * HOUR)
            errors[lead_h].append((forecast["wind_mw"] - rows["wind_mw"])[window].to_numpy())
    rmse = {lead: np.sqrt(np.mean(np.concatenate(e) ** 2)) / capacity for lead, e in errors.items()}
    assert rmse[1] < rmse[6] < rmse[24], rmse
    assert rmse[1] == pytest.approx(0.05, abs=0.02)
    assert rmse[24] > 0.10


def test_a_later_vintage_is_never_further_from_the_actual_on_average(season):
    """Per slot of the day, averaged over 90 days: the squared error of each vintage is at most
    that of every earlier one (issued every 3 h from the day before)."""
    issue_hours = list(range(-24, 24, 3))
    squared = np.zeros((len(issue_hours), 96))
    for start, rows in _days(season[1]):
        for i, hours in enumerate(issue_hours):
            forecast = _vintage(season, rows, start + hours * HOUR)
            squared[i] += (forecast["green_mw"] - rows["green_mw"]).to_numpy() ** 2 / DAYS
    # each vintage against the one before it, slot by slot (sampling noise: 5 % leeway)
    assert (squared[1:] <= squared[:-1] * 1.05 + 1e-9).all()
    assert squared[-1].sum() < 0.5 * squared[0].sum()


def test_with_zero_error_every_vintage_is_the_actual(season):
    start, rows = next(_days(season[1]))
    for hours in (-30, -1, 0, 5.25, 23):
        forecast = _vintage(season, rows, start + hours * HOUR, ERROR.scaled(0.0))
        np.testing.assert_allclose(forecast["green_mw"], rows["green_mw"])
        np.testing.assert_allclose(forecast["green_mw_p10"], rows["green_mw"])
        np.testing.assert_allclose(forecast["green_mw_p90"], rows["green_mw"])


def test_the_day_ahead_vintage_is_the_day_ahead_forecast(season):
    """Issued before every band's lead (12 h here: > 6 h before the first slot), a vintage is
    the day-ahead forecast, exactly; so are slots more than 6 h ahead of a later vintage."""
    start, rows = list(_days(season[1]))[10]
    day_ahead = _vintage(season, rows, None)
    pd.testing.assert_frame_equal(_vintage(season, rows, start - 12 * HOUR), day_ahead)
    morning = _vintage(season, rows, start + 3 * HOUR)
    far = (rows["time"] >= start + 9 * HOUR + pd.Timedelta(minutes=15)).to_numpy()
    pd.testing.assert_frame_equal(morning[far], day_ahead[far])
    assert not morning[~far].equals(day_ahead[~far])


def test_slots_before_the_issue_time_are_the_actual(season):
    start, rows = list(_days(season[1]))[20]
    issued = start + 13 * HOUR + pd.Timedelta(minutes=30)
    forecast = _vintage(season, rows, issued)
    past = (rows["time"] < issued).to_numpy()
    for column in ("pv_mw", "wind_mw", "green_mw"):
        np.testing.assert_array_equal(forecast.loc[past, column], rows.loc[past, column])
    for column in ("green_mw_p10", "green_mw_p90"):
        np.testing.assert_array_equal(forecast.loc[past, column], rows.loc[past, "green_mw"])
    assert (forecast.loc[~past, "green_mw"] != rows.loc[~past, "green_mw"]).mean() > 0.5


def test_vintages_are_reproducible_and_consistent(season, config):
    """Same seed, same numbers, also from a fresh model and reference; a slot's vintages differ
    only by removed bands, never by a fresh draw: with one band (no intraday levels) every
    vintage of a slot still ahead is the same number."""
    start, rows = list(_days(season[1]))[30]
    issued = start + 8 * HOUR
    first = _vintage(season, rows, issued)
    model = SupplyModel({SITE: config.sites[SITE]}, slot_minutes=15)
    again = model.forecast(rows, ERROR, seed=7, reference=season[1], issued_at=issued)
    pd.testing.assert_frame_equal(first, again)
    assert not first.equals(
        model.forecast(rows, ERROR, seed=8, reference=season[1], issued_at=issued)
    )
    one_band = ForecastError(0.15, 0.08, 6)
    late = _vintage(season, rows, start + 20 * HOUR, one_band)
    early = _vintage(season, rows, start - 10 * HOUR, one_band)
    ahead = (rows["time"] >= start + 20 * HOUR).to_numpy()
    pd.testing.assert_frame_equal(late[ahead], early[ahead])


def test_a_vintage_does_not_depend_on_the_vintages_asked_before(season):
    """Vintages of one day prepared once (as a re-planning loop asks for them), asked in any
    order, are the forecasts made afresh for each issue time, exactly."""
    model, _, reference = season
    start, rows = list(_days(season[1]))[40]
    vintages = model.vintages(rows, ERROR, seed=7, reference=reference)
    for hours in (14.0, 3.0, None, 20.5, 3.0, -2.0):
        issued = None if hours is None else start + hours * HOUR
        fresh = _vintage(season, rows, issued)
        pd.testing.assert_frame_equal(vintages.at(issued), fresh, check_exact=True)
