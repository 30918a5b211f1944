"""A site's values from a model grid.

Two methods, named in the run's notes:

- a regular latitude/longitude grid (GFS, GEFS, ECMWF): **bilinear** interpolation between the
  four grid points around the site (``xarray.Dataset.interp``), or the nearest grid point when
  the site lies outside the grid but within ``max_distance_km`` of it;
- a projected grid with 2-D latitude and longitude (HRRR, NAM, RAP: Lambert conformal): the
  **nearest** grid point by great-circle distance.

Longitudes are read as degrees east in [-180, 180) whatever the file uses (NOAA's wgrib2 output
counts 0-360).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from forecasts.weather import ForecastSourceError

__all__ = [
    "MAX_DISTANCE_KM",
    "GridPoint",
    "PointWeights",
    "at_point",
    "great_circle_km",
    "point_weights",
]

MAX_DISTANCE_KM = 50.0
"""Farthest a site may lie from the nearest grid point [km]."""
_EARTH_RADIUS_KM = 6371.0


@dataclass(frozen=True)
class GridPoint:
    """Where a site's values came from: latitude, longitude [deg], the distance from the site
    to the nearest grid point [km] and the method (``bilinear`` or ``nearest``)."""

    latitude: float
    longitude: float
    distance_km: float
    method: str


def great_circle_km(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Haversine distance between points [km]; arguments in degrees, arrays broadcast."""
    phi1, phi2 = np.radians(lat1), np.radians(lat2)
    dphi, dlam = phi2 - phi1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlam / 2) ** 2
    return 2 * _EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def _east(longitude: np.ndarray) -> np.ndarray:
    """Longitudes in [-180, 180) [deg E]."""
    return (np.asarray(longitude, dtype=float) + 180.0) % 360.0 - 180.0


@dataclass(frozen=True)
class PointWeights:
    """A site's weights over a grid's points (method in the module doc): ``weights`` shaped as
    the grid's dimensions ``dims`` (latitude then longitude for a regular grid), summing to 1,
    and the grid point they stand for."""

    dims: tuple[Hashable, ...]
    weights: np.ndarray
    point: GridPoint

    def values(self, variable: xr.DataArray | xr.Variable) -> np.ndarray:
        """A variable (dimensions time and the grid's two) at the site, one value a time
        [its unit]."""
        axes = [variable.dims.index(dim) for dim in ("time", *self.dims)]
        values = np.transpose(np.asarray(variable.values, dtype=float), axes)
        used = self.weights > 0
        return values[:, used] @ self.weights[used]


def point_weights(
    latitude_deg: xr.DataArray | xr.Variable,
    longitude_deg: xr.DataArray | xr.Variable,
    latitude: float,
    longitude: float,
    *,
    source: str,
    max_distance_km: float = MAX_DISTANCE_KM,
) -> PointWeights:
    """The weights of the site at ``latitude``, ``longitude`` [deg] over the grid whose points
    lie at ``latitude_deg``, ``longitude_deg`` (1-D axes of a regular grid, or 2-D).

    Raises :class:`ForecastSourceError` naming ``source``, the site's position, the nearest
    grid point and the grid's extent when the site is farther than ``max_distance_km``.
    """
    lats, lons = latitude_deg.to_numpy().astype(float), _east(longitude_deg.to_numpy())
    grid_dims: tuple[Hashable, ...]
    if latitude_deg.ndim == 1:
        grid_dims = (latitude_deg.dims[0], longitude_deg.dims[0])
        weights, point = _bilinear(lats, lons, latitude, longitude)
        if point.distance_km > max_distance_km or point.method == "nearest":
            _check_distance(point.distance_km, max_distance_km, source, latitude, longitude,
                            lats, lons)  # fmt: skip
    else:
        grid_dims = latitude_deg.dims
        distances = great_circle_km(latitude, longitude, lats, lons)
        where = np.unravel_index(int(np.argmin(distances)), distances.shape)
        _check_distance(float(distances[where]), max_distance_km, source, latitude, longitude,
                        lats, lons)  # fmt: skip
        weights = np.zeros(distances.shape)
        weights[where] = 1.0
        point = GridPoint(float(lats[where]), float(lons[where]), float(distances[where]),
                          "nearest")  # fmt: skip
    return PointWeights(grid_dims, weights, point)


def at_point(
    dataset: xr.Dataset,
    latitude: float,
    longitude: float,
    *,
    source: str,
    max_distance_km: float = MAX_DISTANCE_KM,
) -> tuple[pd.DataFrame, GridPoint]:
    """Every variable of ``dataset`` (dimensions time and the grid's two) at one site (method in
    the module doc): a frame indexed by the dataset's ``time``.

    Raises :class:`ForecastSourceError` as :func:`point_weights` does.
    """
    at = point_weights(dataset["latitude"], dataset["longitude"], latitude, longitude,
                       source=source, max_distance_km=max_distance_km)  # fmt: skip
    columns = {str(name): at.values(variable) for name, variable in dataset.data_vars.items()}
    return pd.DataFrame(columns, index=pd.DatetimeIndex(dataset["time"].to_numpy())), at.point


def _bilinear(
    lats: np.ndarray, lons: np.ndarray, latitude: float, longitude: float
) -> tuple[np.ndarray, GridPoint]:
    """Weights on a regular (latitude, longitude) grid: bilinear inside the grid, the nearest
    point outside it; and the grid point they stand for."""
    i_near = int(np.argmin(np.abs(lats - latitude)))
    j_near = int(np.argmin(np.abs(_east(lons - longitude))))
    distance = float(great_circle_km(latitude, longitude, lats[i_near], lons[j_near]))
    weights = np.zeros((len(lats), len(lons)))
    inside = (
        len(lats) > 1 and len(lons) > 1
        and lats.min() <= latitude <= lats.max() and lons.min() <= longitude <= lons.max()
    )  # fmt: skip
    if not inside:
        weights[i_near, j_near] = 1.0
        return weights, GridPoint(float(lats[i_near]), float(lons[j_near]), distance, "nearest")
    weights = np.outer(_linear_weights(lats, latitude), _linear_weights(lons, longitude))
    return weights, GridPoint(latitude, longitude, distance, "bilinear")


def _linear_weights(axis: np.ndarray, target: float) -> np.ndarray:
    """Weights of linear interpolation at ``target`` over the (unsorted) grid values ``axis``."""
    order = np.argsort(axis)
    ranked = axis[order]
    k = int(np.clip(np.searchsorted(ranked, target), 1, len(ranked) - 1))
    share = (target - ranked[k - 1]) / (ranked[k] - ranked[k - 1])
    weights = np.zeros(len(axis))
    weights[order[k - 1]], weights[order[k]] = 1.0 - share, share
    return weights


def _check_distance(
    distance_km: float,
    max_distance_km: float,
    source: str,
    latitude: float,
    longitude: float,
    lats: np.ndarray,
    lons: np.ndarray,
) -> None:
    if distance_km > max_distance_km:
        raise ForecastSourceError(
            f"{source}: the site at {latitude:.3f} N, {longitude:.3f} E is {distance_km:.0f} km "
            f"from the nearest grid point (at most {max_distance_km:g} km); the grid covers "
            f"{np.min(lats):.2f} to {np.max(lats):.2f} N, {np.min(lons):.2f} to "
            f"{np.max(lons):.2f} E"
        )
