"""Forecast skill by lead: the figures against hand-computed values, the fit against hand-pooled
levels, and the ensemble's coverage on the real GEFS run against a second computation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasts import skill
from forecasts.error import ForecastError, LeadLevel, check_lead_levels
from forecasts.nwp.archive import RunArchive
from forecasts.nwp.ensemble import run_supply
from forecasts.supply import SupplyModel, sun_factor
from scheduler.config import load_config
from tests.conftest import GEFS_RUN, NOAA, TUCSON_CONFIG, needs_nwp

ISSUED = pd.Timestamp("2019-05-15T00:00Z")
SLOTS = pd.date_range(ISSUED, periods=96, freq="15min", name="time")  # leads 0 to 23.75 h


@pytest.fixture(scope="module")
def tucson():
    return load_config(TUCSON_CONFIG)


@pytest.fixture(scope="module")
def site(tucson):
    site = tucson.sites["tucson"]
    assert site.wind_capacity_mw == pytest.approx(10.35)  # 3 x V126/3450
    assert site.pv_capacity_mw_ac == pytest.approx(12.0)
    return site


def _supply(pv_mw, wind_mw, index=SLOTS) -> pd.DataFrame:
    pv = np.broadcast_to(np.asarray(pv_mw, dtype=float), len(index))
    wind = np.broadcast_to(np.asarray(wind_mw, dtype=float), len(index))
    return pd.DataFrame({"pv_mw": pv, "wind_mw": wind, "green_mw": pv + wind}, index=index)


def test_lead_bands_follow_the_error_models_lead_table():
    # (0, 1], (1, 3], (3, 6], lead 0 in the first; outside: before the issue, after 6 h
    leads = [0.0, 0.25, 1.0, 1.25, 3.0, 6.0, 6.25, -0.25]
    assert skill.lead_bands(np.array(leads), (0, 1, 3, 6)).tolist() == [0, 0, 0, 1, 1, 2, -1, -1]
    # the error model too gives the first level at 1 h and the second just after
    error = ForecastError(0.15, 0.08, 6.0, (LeadLevel(1, 0.05, 0.02), LeadLevel(3, 0.08, 0.04)))
    assert error.nrmse_at("wind", np.array([0.0, 1.0, 1.25])).tolist() == [0.05, 0.05, 0.08]
    assert skill.lead_hours(SLOTS[[0, 5]], ISSUED).tolist() == [0.0, 1.25]


@pytest.mark.parametrize("edges", [(0,), (1, 1), (3, 1), (-1, 2)])
def test_lead_edges_must_be_two_or_more_increasing_leads(edges):
    with pytest.raises(ValueError, match="increasing"):
        skill.check_lead_edges(edges)


def test_bias_and_nrmse_as_fractions_of_capacity():
    truth = np.array([2.0, 4.0, 6.0, 8.0])
    assert skill.bias_of_capacity(truth, truth, 10.0) == 0.0
    assert skill.nrmse_of_capacity(truth, truth, 10.0) == 0.0
    # a constant 1.5 MW too high on 10 MW: bias and NRMSE both 0.15
    assert skill.bias_of_capacity(truth + 1.5, truth, 10.0) == pytest.approx(0.15)
    assert skill.nrmse_of_capacity(truth + 1.5, truth, 10.0) == pytest.approx(0.15)
    # errors +3, -1, +3, -1: bias 1 MW, RMSE sqrt(5) MW
    forecast = truth + np.array([3.0, -1.0, 3.0, -1.0])
    assert skill.bias_of_capacity(forecast, truth, 10.0) == pytest.approx(0.1)
    assert skill.nrmse_of_capacity(forecast, truth, 10.0) == pytest.approx(0.2236068)
    assert np.isnan(skill.nrmse_of_capacity(np.array([]), np.array([]), 10.0))


def test_coverage_counts_the_truths_inside_the_band():
    truth = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    inside, below, above = skill.band_shares(truth, np.full(5, 2.0), np.full(5, 4.0))
    assert (inside, below, above) == (0.6, 0.2, 0.2)  # 2, 3, 4 inside (bounds count)
    # a forecast equal to the truth with no spread covers it; a band beside it does not
    assert skill.band_shares(truth, truth, truth) == (1.0, 0.0, 0.0)
    assert skill.band_shares(truth, truth + 0.5, truth + 1.0) == (0.0, 1.0, 0.0)


def test_daylit_slots_are_those_the_error_model_counts(site):
    lit = skill.daylit_slots(SLOTS, 15, site)
    expected = sun_factor(SLOTS, site.latitude, site.longitude, site.altitude_m) > 0.05
    assert (lit == expected).all()
    # 00Z is 17:00 in Arizona (light), 07Z midnight (dark), 19Z noon (light)
    assert lit[0] and not lit[28] and lit[76]


def test_the_freshest_run_gives_each_slot():
    older = _supply(1.0, 1.0, SLOTS[:8])
    newer = _supply(2.0, 2.0, SLOTS[4:12])
    truth = skill.freshest({SLOTS[4]: newer, ISSUED: older})
    assert truth["pv_mw"].tolist() == [1.0] * 4 + [2.0] * 8
    assert (truth.index == SLOTS[:12]).all()
    assert truth["issued_at"].iloc[3] == ISSUED and truth["issued_at"].iloc[4] == SLOTS[4]


def test_pairs_start_at_the_issue_time_and_keep_common_slots():
    forecast = _supply(3.0, 1.0, SLOTS[:10])
    truth = _supply(2.0, 1.0, SLOTS[2:20])
    pairs = skill.paired({SLOTS[4]: forecast}, truth)  # issued at the 5th slot
    assert pairs["time"].tolist() == list(SLOTS[4:10])
    assert pairs["lead_h"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
    assert (pairs["pv_mw"] - pairs["truth_pv_mw"] == 1.0).all()
    assert skill.paired({ISSUED: forecast}, _supply(0.0, 0.0, SLOTS[40:50])).empty


def test_skill_by_lead_on_a_known_offset(site):
    truth = _supply(np.where(skill.daylit_slots(SLOTS, 15, site), 6.0, 0.0), 4.0)
    lit = skill.daylit_slots(SLOTS, 15, site)
    forecast = truth.copy()
    forecast["wind_mw"] += 1.035  # 10 % of the wind farm, every slot
    forecast.loc[~lit, "pv_mw"] += 5.0  # PV wrong only at night: not counted for PV
    forecast["green_mw"] = forecast["pv_mw"] + forecast["wind_mw"]
    forecast["green_mw_p10"] = forecast["green_mw"] - 2.0
    forecast["green_mw_p90"] = forecast["green_mw"] + 0.5  # truth 1.035 below at day
    table = skill.skill_by_lead(skill.paired({ISSUED: forecast}, truth), site, 15, (0, 6, 24))
    by = table.set_index(["lead_to_h", "technology"])
    # leads 0, 0.25 ... 6 h: 25 slots; 6.25 ... 23.75 h: 71 slots
    assert by.loc[(6.0, "wind"), "slots"] == 25 and by.loc[(24.0, "wind"), "slots"] == 71
    assert by.loc[(6.0, "wind"), "bias_of_capacity"] == pytest.approx(0.1)
    assert by.loc[(24.0, "wind"), "nrmse_of_capacity"] == pytest.approx(0.1)
    assert by.loc[(6.0, "pv"), "slots"] == lit[:25].sum()
    assert by.loc[(24.0, "pv"), "nrmse_of_capacity"] == 0.0
    # green: at night the truth is 6.035 MW below the forecast, under p10 = forecast - 2 MW;
    # by day 1.035 MW below, inside the band
    night_24 = (~lit[25:]).sum()
    assert by.loc[(24.0, "green"), "below_p10"] == pytest.approx(night_24 / 71)
    assert by.loc[(24.0, "green"), "p10_p90_coverage"] == pytest.approx(1 - night_24 / 71)
    assert by.loc[(24.0, "green"), "above_p90"] == 0.0
    assert np.isnan(by.loc[(6.0, "wind"), "p10_p90_coverage"])


def test_the_error_model_without_error_gives_the_truth(tucson, site):
    truth = _supply(np.linspace(0.0, 12.0, 96), np.linspace(10.0, 0.0, 96))
    model = SupplyModel(tucson.sites, slot_minutes=15)
    perfect = ForecastError(0.15, 0.08).scaled(0.0)
    wanted = {ISSUED: SLOTS[10:30], SLOTS[40]: SLOTS[40:96]}
    out = skill.error_model_forecasts(truth, site, model, perfect, 1, wanted)
    assert list(out) == list(wanted)
    assert (out[SLOTS[40]].index == SLOTS[40:96]).all()
    assert np.allclose(out[ISSUED]["wind_mw"], truth["wind_mw"].iloc[10:30])
    noisy = skill.error_model_forecasts(truth, site, model, ForecastError(0.15, 0.08), 1, wanted)
    errors = noisy[ISSUED]["wind_mw"] - truth["wind_mw"].iloc[10:30]
    assert np.abs(errors).max() > 0.01  # the configured error, drawn
    assert (noisy[ISSUED]["green_mw_p10"] <= noisy[ISSUED]["green_mw_p90"]).all()


def test_pool_adjacent_violators_by_hand():
    pool = skill.pool_adjacent_violators
    assert pool(np.array([1.0, 2.0, 4.0]), np.ones(3)).tolist() == [1.0, 2.0, 4.0]
    assert pool(np.array([1.0, 3.0, 2.0, 4.0]), np.ones(4)).tolist() == [1.0, 2.5, 2.5, 4.0]
    weighted = pool(np.array([1.0, 3.0, 2.0, 4.0]), np.array([1, 3, 1, 1]))
    assert weighted.tolist() == [1.0, 2.75, 2.75, 4.0]  # (3 x 3 + 2) / 4
    assert pool(np.array([5.0, 1.0, 0.0]), np.ones(3)).tolist() == [2.0] * 3


def _skill_table(bands: list[tuple[float, float, int, float, int, float]]) -> pd.DataFrame:
    """A skill table from (from, to, wind slots, wind NRMSE, PV slots, PV NRMSE) per band."""
    rows = []
    for start, end, wind_slots, wind, pv_slots, pv in bands:
        for technology, slots, nrmse in (("wind", wind_slots, wind), ("pv", pv_slots, pv),
                                         ("green", wind_slots, (wind + pv) / 2)):  # fmt: skip
            rows.append({"lead_from_h": start, "lead_to_h": end, "technology": technology,
                         "slots": slots, "runs": 1, "bias_of_capacity": 0.0,
                         "nrmse_of_capacity": nrmse})  # fmt: skip
    return pd.DataFrame(rows)


def test_the_fit_pools_falling_levels_and_leaves_thin_bands_out():
    table = _skill_table(
        [
            (0, 1, 4, 0.01, 4, 0.01),  # too few slots: left out
            (1, 3, 20, 0.06, 20, 0.03),
            (3, 6, 20, 0.04, 20, 0.04),  # wind falls: pooled with 1-3 h
            (6, 12, 40, 0.10, 0, float("nan")),  # no daylight: left out
            (12, 24, 40, 0.12, 40, 0.05),
            (24, 36, 30, 0.15, 10, 0.06),
            (36, 48, 10, 0.19, 10, 0.07),
            (48, 72, 40, 0.30, 40, 0.10),  # beyond two days: not fitted
        ]
    )
    fit = skill.fit_lead_levels(table, min_slots=16)
    assert [level.lead_hours for level in fit.intraday] == [3.0, 6.0, 24.0]
    pooled_wind = np.sqrt((20 * 0.06**2 + 20 * 0.04**2) / 40)  # 0.0510
    assert [level.wind_nrmse for level in fit.intraday] == pytest.approx(
        [pooled_wind, pooled_wind, 0.12]
    )
    assert [level.pv_nrmse for level in fit.intraday] == pytest.approx([0.03, 0.04, 0.05])
    # day-ahead: 24-48 h pooled, wind sqrt((30 x 0.15^2 + 10 x 0.19^2) / 40)
    assert fit.wind_nrmse == pytest.approx(np.sqrt((30 * 0.0225 + 10 * 0.0361) / 40))
    assert fit.pv_nrmse == pytest.approx(np.sqrt((10 * 0.0036 + 10 * 0.0049) / 20))
    assert fit.day_ahead_leads_h == (24.0, 48.0)
    notes = " | ".join(fit.notes)
    assert "band 0-1 h left out: 4 wind, 4 daylit PV slot(s), 16 needed" in notes
    assert "band 6-12 h left out: 0 daylit PV" in notes
    assert "wind: levels falling with the lead pooled (bands 1-3 h, 3-6 h)" in notes
    assert "beyond 48 h not fitted" in notes
    check_lead_levels(fit.intraday, fit.wind_nrmse, fit.pv_nrmse)  # what a config accepts


def test_the_fit_takes_the_last_band_as_day_ahead_when_later_leads_are_thin():
    table = _skill_table([(1, 3, 20, 0.05, 20, 0.02), (12, 24, 40, 0.30, 40, 0.04),
                          (24, 48, 40, 0.20, 4, 0.01)])  # fmt: skip
    fit = skill.fit_lead_levels(table, min_slots=16)
    assert fit.day_ahead_leads_h == (12.0, 24.0)
    assert (fit.wind_nrmse, fit.pv_nrmse) == (pytest.approx(0.30), pytest.approx(0.04))
    assert [level.lead_hours for level in fit.intraday] == [3.0]
    with pytest.raises(ValueError, match="no lead band has 50 slots"):
        skill.fit_lead_levels(table, min_slots=50)


def test_the_spread_factor_search_finds_the_nearest_coverage():
    factor, coverage = skill.fit_spread_factor(lambda f: min(1.0, 0.5 * f))
    assert factor == pytest.approx(1.6, abs=0.01) and coverage == pytest.approx(0.8, abs=0.005)
    # coverage jumps from 70 % to 95 % at 2: 70 % is nearer 80 %, just below 2
    factor, coverage = skill.fit_spread_factor(lambda f: 0.95 if f >= 2 else 0.7)
    assert coverage == 0.7 and 1.98 <= factor < 2.0
    assert skill.fit_spread_factor(lambda f: 0.5) == (5.0, 0.5)  # out of reach: the bound
    assert skill.fit_spread_factor(lambda f: 0.9) == (0.25, 0.9)  # wide already


@pytest.mark.realdata
@needs_nwp
def test_the_gefs_coverage_grows_with_the_spread_and_matches_the_whole_runs(tucson, site):
    model = SupplyModel(tucson.sites, slot_minutes=15)
    error = ForecastError(0.15, 0.08)
    gefs = RunArchive(GEFS_RUN)
    run = gefs.read(gefs.runs[0], {"tucson": site}, 15)["tucson"]
    hrrr = RunArchive(NOAA / "hrrr_hourly")
    reference = hrrr.read(hrrr.runs[0], {"tucson": site}, 15)["tucson"]
    truth = skill.freshest({reference.issued_at: run_supply(reference, site, model, error)})
    coverage_at = skill.ensemble_coverage([run], truth, site, model, error)
    for factor in (1.0, 3.0):  # a second computation: the whole run, then the pairs
        whole = run_supply(run, site, model, error, spread_factor=factor)
        pairs = skill.paired({run.issued_at: whole}, truth)
        inside, _, _ = skill.band_shares(
            pairs["truth_green_mw"], pairs["green_mw_p10"], pairs["green_mw_p90"]
        )
        assert coverage_at(factor) == inside
    shares = [coverage_at(f) for f in (0.5, 1.0, 2.0, 4.0, 5.0)]
    assert shares == sorted(shares) and shares[-1] > shares[0]
