"""Irradiance components: do GHI, DNI and DHI close, and what to use when they do not.

They close when ``ghi = dhi + dni cos Z``. Measured and modelled files often do not: the CSWD
files give ``(dhi + dni cos Z) / ghi`` of 0.90-0.96 over a year, IWEC files within 0.1 % of 1.
PV models use all three (DNI for the beam on the panel, DHI for the sky, GHI for the ground), so
a rule has to say which to trust:

- ``file`` (default): keep the file's DNI and DHI as given, as a direct pvlib run on the same
  file does; the PV yield then follows the file's beam and diffuse.
- ``ghi_dhi``: trust GHI and DHI and rebuild ``dni = (ghi - dhi) / cos Z`` (clipped to
  [0, 1361 W/m^2], zero with the sun below 3 deg): the beam then carries all of GHI that is
  not diffuse, which raises the PV yield where the file's components fall short of GHI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["CLOSURE_TOLERANCE", "DNI_RULES", "closure_ratio", "resolve_components"]

DNI_RULES: tuple[str, ...] = ("file", "ghi_dhi")
CLOSURE_TOLERANCE = 0.03
"""Components within this fraction of GHI (summed over a file) close [-]."""
SOLAR_CONSTANT_W_M2 = 1361.0
"""Total solar irradiance at 1 AU [W/m^2] (Kopp and Lean 2011)."""
_MIN_COS_ZENITH = 0.1  # sun above about 6 deg
_MIN_GHI_W_M2 = 20.0
_REBUILD_MIN_COS_ZENITH = 0.05  # sun above about 3 deg


def closure_ratio(data: pd.DataFrame, cos_zenith: np.ndarray) -> float:
    """``sum(dhi + dni cos Z) / sum(ghi)`` over rows with the sun above 6 deg and GHI > 20 W/m^2.

    1 when the components close; ``cos_zenith`` is the mean over each row's interval [-];
    NaN when no row qualifies.
    """
    ghi = data["ghi"].to_numpy()
    used = (cos_zenith > _MIN_COS_ZENITH) & (ghi > _MIN_GHI_W_M2)
    if not used.any():
        return float("nan")
    parts = data["dhi"].to_numpy()[used] + data["dni"].to_numpy()[used] * cos_zenith[used]
    return float(parts.sum() / ghi[used].sum())


def resolve_components(data: pd.DataFrame, cos_zenith: np.ndarray, rule: str) -> pd.DataFrame:
    """The weather frame with its irradiance components chosen by ``rule`` (see module doc)."""
    if rule not in DNI_RULES:
        raise ValueError(f"unknown DNI rule {rule!r}; allowed: {', '.join(DNI_RULES)}")
    if rule == "file":
        return data
    up = cos_zenith > _REBUILD_MIN_COS_ZENITH
    beam = (data["ghi"] - data["dhi"]).clip(lower=0.0).to_numpy()
    dni = np.zeros(len(data))
    dni[up] = np.minimum(beam[up] / cos_zenith[up], SOLAR_CONSTANT_W_M2)
    return data.assign(dni=dni)
