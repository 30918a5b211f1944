"""``greensched forecast-skill`` on the real NOAA runs: the table, the fit a config accepts, the
same figures whichever way the same truth comes in, and every bad input as one message and
exit code 2."""

from __future__ import annotations

import re

import pandas as pd
import pytest
import yaml

from forecasts.nwp.archive import RunArchive
from forecasts.nwp.ensemble import run_supply
from forecasts.supply import SupplyModel
from scheduler.config import load_config
from scheduler.pipeline import forecast_error_of
from tests.conftest import (
    GEFS_RUN,
    GFS_RUN,
    NOAA,
    SHANGHAI_EPW,
    TUCSON_CONFIG,
    greensched,
    needs_nwp,
    run_cli,
)

pytestmark = [pytest.mark.realdata, needs_nwp]
TUCSON = ["--config", str(TUCSON_CONFIG)]
HRRR = NOAA / "hrrr_hourly"


@pytest.fixture(scope="module")
def hrrr_files(tmp_path_factory):
    """The HRRR run at the Tucson site written two ways, its values taken from the real run: its
    supply as a measurements table (CSV) and its slot weather as a dated plain weather CSV."""
    config = load_config(TUCSON_CONFIG)
    site = config.sites["tucson"]
    archive = RunArchive(HRRR)
    run = archive.read(archive.runs[0], {"tucson": site}, 15)["tucson"]
    supply = run_supply(run, site, SupplyModel(config.sites), forecast_error_of(config))
    directory = tmp_path_factory.mktemp("hrrr")
    measured = pd.DataFrame(
        {
            "time": supply.index.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "site": "tucson",
            "pv_mw": supply["pv_mw"].to_numpy(),
            "wind_mw": supply["wind_mw"].to_numpy(),
        }
    )
    measured.to_csv(directory / "measured.csv", index=False, float_format="%.17g")
    weather = next(iter(run.weather.values()))
    data = weather.data.set_axis(weather.data.index.strftime("%Y-%m-%dT%H:%MZ")).rename_axis("time")
    with (directory / "weather.csv").open("w") as handle:
        handle.write(f"# wind_height_m: {weather.wind_height_m:g}\n# latitude: {site.latitude}\n"
                     f"# longitude: {site.longitude}\n")  # fmt: skip
        data.to_csv(handle, float_format="%.17g")
    return directory / "measured.csv", directory / "weather.csv"


def test_gfs_against_the_hrrr_reference_says_it_is_a_model(monkeypatch, capsys, tmp_path):
    out = tmp_path / "skill.csv"
    code, stdout, err = run_cli(
        monkeypatch, capsys, "forecast-skill", *TUCSON, "--forecast", f"tucson={GFS_RUN}",
        "--reference", f"tucson={HRRR}", "--out", str(out), "--fit",
    )  # fmt: skip
    assert code == 0, err
    text = " ".join(stdout.split())
    assert "gfs_0p25 (1 run(s) issued 2019-05-15 00Z)" in text
    assert "not a measurement" in text and "disagree" in text
    table = pd.read_csv(out)
    assert set(table["forecast"]) == {"gfs_0p25", "error model"}
    assert table["truth"].str.contains("reference hrrr_hourly").all()
    # HRRR hourly covers 36 h: the GFS is graded on those slots, the error model on the same
    gfs = table[(table["forecast"] == "gfs_0p25") & (table["technology"] == "wind")]
    synthetic = table[(table["forecast"] == "error model") & (table["technology"] == "wind")]
    assert gfs["slots"].sum() == 144 == synthetic["slots"].sum()  # 36 h of 15-min slots
    assert gfs["lead_to_h"].max() == 48
    assert (table["nrmse_of_capacity"].dropna() >= 0).all()
    # the fit: YAML a config accepts
    snippet = stdout[stdout.index("# fitted from") :]
    fitted = yaml.safe_load(snippet)
    config = load_config(TUCSON_CONFIG).updated(fitted, "--fit output")
    wind_12_24 = gfs[gfs["lead_to_h"] == 24]["nrmse_of_capacity"].item()
    assert config.forecast.wind_nrmse == pytest.approx(wind_12_24, abs=5e-4)
    assert "no ensemble spread factor" in snippet


def test_the_same_truth_measured_as_weather_or_as_a_reference_gives_the_same_table(
    monkeypatch, capsys, tmp_path, hrrr_files
):
    measured, weather = hrrr_files
    tables, said = {}, {}
    for kind, truth in (("reference", f"tucson={HRRR}"), ("actual", f"tucson={measured}"),
                        ("actual", f"tucson={weather}")):  # fmt: skip
        out = tmp_path / "skill.csv"
        code, _, err = run_cli(
            monkeypatch, capsys, "forecast-skill", *TUCSON, "--forecast", f"tucson={GFS_RUN}",
            f"--{kind}", truth, "--out", str(out),
        )  # fmt: skip
        assert code == 0, err
        table = pd.read_csv(out)
        said[truth] = table["truth"].iloc[0]
        tables[truth] = table.drop(columns="truth")
    first, *others = tables.values()
    for other in others:
        pd.testing.assert_frame_equal(first, other, rtol=1e-9)
    assert said[f"tucson={measured}"] == f"measured supply in {measured}"
    assert said[f"tucson={weather}"] == f"the actual from {weather}"


@pytest.mark.skipif(not SHANGHAI_EPW.exists(), reason="real EPW files are absent")
def test_a_typical_year_is_graded_against_but_named_a_climatology(monkeypatch, capsys, tmp_path):
    out = tmp_path / "skill.csv"
    code, _, err = run_cli(
        monkeypatch, capsys, "forecast-skill", *TUCSON, "--forecast", f"tucson={GFS_RUN}",
        "--actual", f"tucson={SHANGHAI_EPW}", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert "a typical year, mapped onto the runs' dates" in " ".join(err.split())
    assert pd.read_csv(out)["truth"].str.contains("a climatology, not an actual").all()


def test_an_ensemble_fits_its_spread_factor(monkeypatch, capsys, tmp_path):
    code, stdout, err = run_cli(
        monkeypatch, capsys, "forecast-skill", *TUCSON, "--forecast", f"tucson={GEFS_RUN}",
        "--reference", f"tucson={HRRR}", "--out", str(tmp_path / "s.csv"), "--fit",
        "--lead-edges", "0,12,24,36", "--min-slots", "8",
    )  # fmt: skip
    assert code == 0, err
    assert "21 members" in " ".join(stdout.split())
    fitted = yaml.safe_load(stdout[stdout.index("# fitted from") :])
    factor = fitted["forecast"]["nwp"]["ensemble_spread_factor"]
    assert 0.25 <= factor <= 5.0
    load_config(TUCSON_CONFIG).updated(fitted, "--fit output")
    # 24-36 h holds 7 daylit slots (05:00-06:45 MST), under 8: 12-24 h gives the day-ahead level
    assert [level["lead_hours"] for level in fitted["forecast"]["intraday"]] == [12]
    assert "the day-ahead level is that of band 12-24 h" in stdout


def _measured(tmp_path, text: str) -> str:
    path = tmp_path / "measured.csv"
    path.write_text(text)
    return f"tucson={path}"


CASES = {
    "no truth": ([], "give one truth"),
    "two truths": (["--reference", f"tucson={HRRR}", "--actual", f"tucson={GFS_RUN}"],
                   "give one truth"),
    "no run in range": (["--reference", f"tucson={HRRR}", "--from", "2021-01-01"],
                        "no run issued from 2021-01-01 to the last"),
    "a bad date": (["--reference", f"tucson={HRRR}", "--from", "yesterday"],
                   "--from 'yesterday' is not a day in ISO 8601"),
    "bad lead edges": (["--reference", f"tucson={HRRR}", "--lead-edges", "0,6,3"],
                       "--lead-edges '0,6,3': give at least two leads"),
    "another site's truth": (["--reference", f"shantou={HRRR}"], "unknown site 'shantou'"),
    "a truth of no file": (["--actual", "tucson=/nowhere/measured.csv"], "no such file"),
    "a live source": (["--reference", "tucson=open-meteo"], "grades runs kept in files"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_bad_input_is_one_message_and_exit_2(monkeypatch, capsys, tmp_path, case):
    args, says = CASES[case]
    code, _, err = run_cli(
        monkeypatch, capsys, "forecast-skill", *TUCSON, "--forecast", f"tucson={GFS_RUN}",
        *args, "--out", str(tmp_path / "s.csv"),
    )  # fmt: skip
    assert code == 2, err
    assert "Traceback" not in err
    assert says in " ".join(err.split()), err


MEASURED = {
    "a missing column": ("time,site,pv_mw\n2019-05-15T01:00:00Z,tucson,3\n",
                         "missing column(s) wind_mw"),
    "not a number": ("time,site,pv_mw,wind_mw\n2019-05-15T01:00:00Z,tucson,3,lots\n",
                     "line 2: wind_mw: 'lots' is not a number"),
    "off the slots": ("time,site,pv_mw,wind_mw\n2019-05-15T01:07:00Z,tucson,3,1\n",
                      "column time: 2019-05-15T01:07:00+00:00 is not the start of a 15-minute"),
    "hourly rows": ("time,site,pv_mw,wind_mw\n2019-05-15T01:00:00Z,tucson,3,1\n"
                    "2019-05-15T02:00:00Z,tucson,3,1\n", "give --slot-minutes 60"),
    "another site": ("time,site,pv_mw,wind_mw\n2019-05-15T01:00:00Z,mesa,3,1\n",
                     "column site: no row of site 'tucson'; the file's sites: mesa"),
    "another day": ("time,site,pv_mw,wind_mw\n2019-06-01T01:00:00Z,tucson,3,1\n",
                    "no slot of the 1 run(s) graded"),
}  # fmt: skip


@pytest.mark.parametrize("case", MEASURED)
def test_a_bad_measurements_file_names_the_file_and_field(monkeypatch, capsys, tmp_path, case):
    text, says = MEASURED[case]
    code, _, err = run_cli(
        monkeypatch, capsys, "forecast-skill", *TUCSON, "--forecast", f"tucson={GFS_RUN}",
        "--actual", _measured(tmp_path, text), "--out", str(tmp_path / "s.csv"),
    )  # fmt: skip
    assert code == 2, err
    assert "Traceback" not in err
    flat = " ".join(err.split())
    assert says in flat and "measured.csv" in flat, err


def test_a_corrupt_run_names_the_file(monkeypatch, capsys, tmp_path):
    run = tmp_path / "runs/2019/05/15/00"
    run.mkdir(parents=True)
    (run / "gfs_0p25.nc").write_bytes(GFS_RUN.read_bytes()[:4000])
    code, _, err = run_cli(
        monkeypatch, capsys, "forecast-skill", *TUCSON, "--forecast",
        f"tucson={tmp_path / 'runs'}", "--reference", f"tucson={HRRR}",
        "--out", str(tmp_path / "s.csv"),
    )  # fmt: skip
    assert code == 2 and re.search(r"gfs_0p25\.nc: not a readable NetCDF file", err), err
    assert "Traceback" not in err


@pytest.mark.slow
def test_forecast_skill_as_a_user_runs_it(tmp_path):
    done = greensched(
        "forecast-skill", *TUCSON, "--forecast", f"tucson={NOAA / 'nam_12km'}",
        "--reference", f"tucson={HRRR}", "--out", str(tmp_path / "skill.csv"), "--fit",
        cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "nam_12km" in done.stdout and "wind_nrmse:" in done.stdout
    assert (tmp_path / "skill.csv").is_file()
    done = greensched(
        "forecast-skill", *TUCSON, "--forecast", f"tucson={NOAA / 'nam_12km'}", cwd=tmp_path
    )
    assert done.returncode == 2 and "give one truth" in done.stderr
    assert "Traceback" not in done.stderr
