"""The forecasts tests' site: shantou moved onto the Shanghai station."""

from __future__ import annotations

import pytest

from tests.forecasts.weather_files import SHANGHAI


@pytest.fixture(scope="module")
def site(config):
    """The shantou site moved onto the Shanghai station, so no distance warning interferes."""
    return config.sites["shantou"].model_copy(
        update={"latitude": SHANGHAI[0], "longitude": SHANGHAI[1]}
    )
