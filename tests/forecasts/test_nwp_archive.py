"""Directories of runs: which run is used at a time, and what a bad source says."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from forecasts.error import ForecastError
from forecasts.nwp.archive import RunArchive
from forecasts.nwp.feed import RunFeed
from forecasts.supply import SupplyModel
from forecasts.weather import ForecastSourceError
from scheduler.config import load_config
from tests.conftest import GEFS_RUN, GFS_RUN, NOAA, TUCSON_CONFIG, needs_nwp

pytestmark = [pytest.mark.realdata, needs_nwp]


@pytest.fixture(scope="module")
def site():
    return load_config(TUCSON_CONFIG).sites["tucson"]


def _utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def test_a_directory_of_runs_gives_the_newest_published_by_a_time():
    """GFS runs of 2019-05-15 and 2019-07-15 00Z, each published 4 h after its issue time."""
    archive = RunArchive(NOAA / "gfs_0p25")
    assert [r.issued_at for r in archive.runs] == [_utc("2019-05-15"), _utc("2019-07-15")]
    assert archive.latest(_utc("2019-05-15 03:59")) is None  # issued, not yet published
    assert archive.latest(_utc("2019-05-15 04:00")).issued_at == _utc("2019-05-15")
    assert archive.latest(_utc("2019-07-15 03:00")).issued_at == _utc("2019-05-15")
    assert archive.latest(_utc("2019-08-01")).issued_at == _utc("2019-07-15")
    quick = RunArchive(NOAA / "gfs_0p25", available_after=pd.Timedelta(0))
    assert quick.latest(_utc("2019-05-15 00:00")).issued_at == _utc("2019-05-15")


def test_a_run_that_arrives_is_found_on_refresh(tmp_path):
    root = tmp_path / "gfs"
    first = root / "2019/05/15/00"
    first.mkdir(parents=True)
    shutil.copy(GFS_RUN, first / "gfs_0p25.nc")
    archive = RunArchive(root, available_after=pd.Timedelta(0))
    assert len(archive.runs) == 1
    later = root / "2019/05/15/06"
    later.mkdir(parents=True)
    shutil.copy(GFS_RUN, later / "gfs_0p25.nc")
    assert archive.latest(_utc("2019-05-15 07:00")).issued_at == _utc("2019-05-15")
    archive.refresh()
    assert archive.latest(_utc("2019-05-15 07:00")).issued_at == _utc("2019-05-15 06:00")


def test_gefs_directory_is_one_run_of_21_members_without_mean_and_spread(site):
    archive = RunArchive(GEFS_RUN)
    (ref,) = archive.runs
    run = archive.read(ref, {"tucson": site}, 15)["tucson"]
    assert sorted(run.members) == ["c00", *(f"p{i:02d}" for i in range(1, 21))]


def test_feed_reads_a_run_once_for_all_sites_sharing_it(site):
    other = site.model_copy(update={"name": "east", "longitude": -110.2})
    sites = {"tucson": site, "east": other}
    archive = RunArchive(GFS_RUN)
    calls = []
    read = archive.read

    def counted(*args):
        calls.append(args[0])
        return read(*args)

    archive.read = counted  # type: ignore[method-assign]
    feed = RunFeed({"tucson": archive, "east": archive}, sites, SupplyModel(sites), ForecastError())
    first = feed.at(_utc("2019-05-15 07:00"))
    again = feed.at(_utc("2019-05-15 09:00"))
    assert set(first) == {"tucson", "east"} and len(calls) == 1
    assert again["east"].supply is first["east"].supply
    # the two sites sit at different grid points: different forecasts
    assert not first["east"].supply["wind_mw"].equals(first["tucson"].supply["wind_mw"])
    assert feed.at(_utc("2019-05-14")) == {}


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda tmp: tmp / "absent", "no such file or directory"),
        (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no model run found"),
        (lambda tmp: NOAA, "runs of several models"),
    ],
)
def test_a_source_that_is_not_one_models_runs_is_refused(tmp_path, make, says):
    with pytest.raises(ForecastSourceError, match=says):
        RunArchive(make(tmp_path))


def test_a_corrupt_file_is_named(tmp_path, site):
    run = tmp_path / "2019/05/15/00"
    run.mkdir(parents=True)
    (run / "gfs_0p25.nc").write_bytes(GFS_RUN.read_bytes()[:5000])
    archive = RunArchive(tmp_path)
    with pytest.raises(ForecastSourceError, match=r"gfs_0p25\.nc: not a readable NetCDF"):
        archive.read(archive.runs[0], {"tucson": site}, 15)


def test_a_file_without_a_needed_variable_names_it(tmp_path, site):
    import xarray as xr

    run = tmp_path / "2019/05/15/00"
    run.mkdir(parents=True)
    xr.open_dataset(GFS_RUN).drop_vars("si10").to_netcdf(run / "gfs_0p25.nc")
    archive = RunArchive(tmp_path)
    with pytest.raises(ForecastSourceError, match=r"variable\(s\) si10 missing"):
        archive.read(archive.runs[0], {"tucson": site}, 15)


def test_a_site_off_the_grid_is_refused_with_its_distance(site):
    shanghai = site.model_copy(update={"latitude": 31.2, "longitude": 121.5})
    archive = RunArchive(GFS_RUN)
    with pytest.raises(ForecastSourceError, match=r"km from the nearest grid point") as error:
        archive.read(archive.runs[0], {"tucson": shanghai}, 15)
    assert "the grid covers 32.00 to 32.50 N" in str(error.value)
