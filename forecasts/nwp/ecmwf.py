"""ECMWF open data: IFS and AIFS runs through the ``ecmwf-opendata`` client.

ECMWF publishes each run under ``{source}/{yyyymmdd}/{HH}z/{model}/{resol}/{stream}/``, one
GRIB2 file per step (``{yyyymmddHHMMSS}-{step}h-{stream}-{type}.grib2``) beside a JSON-lines
``.index`` file that gives every field's byte range; the client reads the index and fetches
only the fields asked for (HTTP Range requests). A run's :data:`PARAMS` at every step from its
issue time to ``lead_hours`` (every 3 h for IFS, 6 h for AIFS) are fetched once into the cache
directory, one file per part of the run (written whole or not at all), and read with
:func:`~forecasts.nwp.grib.read_grib_members`: ``ssrd`` (J/m^2 accumulated since the run began)
becomes mean W/m^2 per step, and the 100 m wind is used with the shear from 10 m.

What is fetched (``model`` as the client names it):

- ``ecmwf[:ifs|aifs-single]``: the deterministic run, stream ``oper``, type ``fc`` (IFS runs of
  06 and 18 UTC were under stream ``scda`` before IFS cycle 50r1 of 2026-05-12; the client
  picks the stream by date);
- ``ecmwf-ens[:ifs|aifs-ens]``: the ensemble, stream ``enfo``: its control and
  ``ensemble_members`` perturbed members (type ``pf``, GRIB ``number`` 1, 2 ...). Since cycle
  50r1 the IFS control is the deterministic run itself (``oper``/``fc``), before it was
  ``enfo``/``cf``; AIFS ENS keeps ``cf``.

Runs are issued every 6 hours. :meth:`EcmwfOpenData.latest` takes the newest run issued at
least the publication delay before ``at`` (:data:`~forecasts.nwp.archive.AVAILABLE_AFTER`, or
the configured delay) and asks the server for the index of its last step; when that is missing
(HTTP 404: not published yet, or no longer kept: data.ecmwf.int keeps the last few days, the
cloud mirrors longer) it falls back to the run before, and says so in the log. An unreachable
server, an HTTP error or a download cut short is a :class:`ForecastSourceError` of one line
naming the source, the URL and the reason.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import eccodes
import pandas as pd
import requests
from ecmwf.opendata import Client
from multiurl import robust
from requests.adapters import HTTPAdapter

from forecasts.nwp.archive import AVAILABLE_AFTER
from forecasts.nwp.grib import read_grib_members
from forecasts.nwp.grid import MAX_DISTANCE_KM
from forecasts.nwp.run import ForecastRun, site_runs
from forecasts.nwp.settings import EcmwfSettings, NwpSettings
from forecasts.nwp.source import ForecastSource, RunRef
from forecasts.specs import SupplySite
from forecasts.weather import ForecastSourceError

__all__ = [
    "DETERMINISTIC_MODELS",
    "ENSEMBLE_MODELS",
    "PARAMS",
    "REQUIRED_PARAMS",
    "SPEC_KINDS",
    "EcmwfOpenData",
]

log = logging.getLogger(__name__)

PARAMS = ("2t", "10u", "10v", "100u", "100v", "sp", "ssrd")
"""Fields fetched of every step: 2 m temperature [K], 10 m and 100 m wind components [m/s],
surface pressure [Pa], surface solar radiation downwards accumulated since the run began
[J/m^2]."""
REQUIRED_PARAMS = ("2t", "10u", "10v", "ssrd")
"""Fields a run must have at every step (without 100 m wind the 10 m wind is used, without
surface pressure the site's altitude gives it)."""
DETERMINISTIC_MODELS = ("ifs", "aifs-single")
ENSEMBLE_MODELS = ("ifs", "aifs-ens")
SPEC_KINDS = {"ecmwf": DETERMINISTIC_MODELS, "ecmwf-ens": ENSEMBLE_MODELS}
"""Spec kinds (``KIND`` or ``KIND:MODEL``) and the models each allows, the first the default
of ``ecmwf-ens`` (``ecmwf`` takes ``forecast.nwp.ecmwf.model``)."""
_STEP_HOURS = {"ifs": 3, "aifs-single": 6, "aifs-ens": 6}
_RUN_EVERY = pd.Timedelta(hours=6)
_RUNS_BACK = 4  # runs tried, newest first, before giving up: one day
_IFS_CONTROL_IN_OPER = pd.Timestamp("2026-05-12T06:00", tz="UTC")  # IFS cycle 50r1


@dataclass(frozen=True)
class _Part:
    """One file of a run: what the client is asked for and the file's name in the cache."""

    request: dict[str, Any]
    file_name: str
    member_numbers: tuple[int, ...] = ()


class _TimeoutAdapter(HTTPAdapter):
    """Gives every request of the client's session a timeout (the client sets none) [s]."""

    def __init__(self, timeout_s: float) -> None:
        super().__init__()
        self.timeout_s = timeout_s

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request,
            stream=stream,
            timeout=self.timeout_s if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "greensched" / "ecmwf"


class EcmwfOpenData(ForecastSource):
    """Runs of ECMWF open data (module doc) of ``model``, deterministic or, with ``ensemble``,
    the ensemble, fetched as ``settings`` say. ``available_after`` overrides the publication
    delay; ``max_distance_km`` bounds a site's distance from the grid."""

    def __init__(
        self,
        settings: EcmwfSettings,
        *,
        model: str | None = None,
        ensemble: bool = False,
        available_after: pd.Timedelta | None = None,
        max_distance_km: float = MAX_DISTANCE_KM,
    ) -> None:
        kind = "ecmwf-ens" if ensemble else "ecmwf"
        self.model = model or (ENSEMBLE_MODELS[0] if ensemble else settings.model)
        if self.model not in SPEC_KINDS[kind]:
            raise ForecastSourceError(
                f"forecast source {kind + ':' + self.model!r}: unknown ECMWF model "
                f"{self.model!r}; give "
                + " or ".join(f"{kind}:{name}" for name in SPEC_KINDS[kind])
            )
        self.label = f"{kind}:{self.model}"
        self.ensemble = ensemble
        self.settings = settings
        self.run_model = f"ecmwf-{self.model}" + (
            "-ens" if self.model == "ifs" and ensemble else ""
        )
        delay = AVAILABLE_AFTER["ecmwf"] if available_after is None else available_after
        self.available_after: pd.Timedelta = delay
        self.max_distance_km = max_distance_km
        self.cache_dir = Path(settings.cache_dir) if settings.cache_dir else _default_cache_dir()
        try:
            self._client = Client(
                source=settings.source,
                model=self.model,
                resol=settings.resolution,
                maximum_retries=settings.retries + 1,
                retry_after=settings.retry_wait_s,
            )
        except ValueError as error:
            raise ForecastSourceError(
                f"{self.label}: forecast.nwp.ecmwf.source: {error}; give 'ecmwf', 'aws', "
                "'azure', 'google' or an http(s) URL"
            ) from None
        adapter = _TimeoutAdapter(settings.timeout_s)
        self._client.session.mount("http://", adapter)
        self._client.session.mount("https://", adapter)
        self.url: str = self._client.url
        self._published: set[pd.Timestamp] = set()

    @classmethod
    def from_spec(cls, spec: str, settings: NwpSettings) -> EcmwfOpenData:
        """The source ``spec`` (``ecmwf``, ``ecmwf:MODEL``, ``ecmwf-ens``, ``ecmwf-ens:MODEL``)
        names, fetched as ``settings.ecmwf`` say."""
        kind, colon, model = spec.partition(":")
        if kind not in SPEC_KINDS or (colon and not model):
            raise ForecastSourceError(
                f"forecast source {spec!r}: not an ECMWF open data source; give "
                + ", ".join(
                    f"'{k}' or '{k}:MODEL' (MODEL: {', '.join(m)})" for k, m in SPEC_KINDS.items()
                )
            )
        delay = settings.available_after_minutes
        return cls(
            settings.ecmwf,
            model=model or None,
            ensemble=kind == "ecmwf-ens",
            available_after=None if delay is None else pd.Timedelta(minutes=delay),
            max_distance_km=settings.max_grid_distance_km,
        )

    # --- which files make a run -------------------------------------------------------------

    def steps(self) -> list[int]:
        """Steps fetched of every run [h since its issue time]."""
        return list(range(0, self.settings.lead_hours + 1, _STEP_HOURS[self.model]))

    def _parts(self, issued_at: pd.Timestamp) -> list[_Part]:
        """The files of the run issued at ``issued_at``: the deterministic run, or an ensemble's
        control and perturbed members (module doc)."""
        base = {
            "date": f"{issued_at:%Y%m%d}",
            "time": issued_at.hour,
            "step": self.steps(),
            "param": list(PARAMS),
            "levtype": "sfc",
        }
        lead = f"{self.settings.lead_hours}h"
        deterministic = _Part({**base, "stream": "oper", "type": "fc"}, f"oper-fc-{lead}.grib2")
        if not self.ensemble:
            return [deterministic]
        if self.model == "ifs" and issued_at >= _IFS_CONTROL_IN_OPER:
            control = deterministic
        else:
            control = _Part({**base, "stream": "enfo", "type": "cf"}, f"enfo-cf-{lead}.grib2")
        numbers = tuple(range(1, self.settings.ensemble_members + 1))
        perturbed = _Part(
            {**base, "stream": "enfo", "type": "pf", "number": list(numbers)},
            f"enfo-pf{len(numbers)}-{lead}.grib2",
            numbers,
        )
        return [control, perturbed]

    def _cached(self, issued_at: pd.Timestamp, part: _Part) -> Path:
        run = f"{self.model}-{self.settings.resolution}"
        return self.cache_dir / run / f"{issued_at:%Y%m%d%H}" / part.file_name

    def _urls(self, request: Mapping[str, Any]) -> list[str]:
        """The data files a request reads (the client's own URL builder, as its ``latest``
        uses it)."""
        with self._errors(self.url):
            return list(self._client._get_urls(request=dict(request), use_index=False).urls)

    # --- latest -----------------------------------------------------------------------------

    def latest(self, at: pd.Timestamp) -> RunRef:
        """The newest run published by ``at`` (UTC): issued at least the publication delay
        before, and on the server (module doc)."""
        at_utc = at.tz_convert("UTC") if at.tzinfo is not None else at.tz_localize("UTC")
        newest = (at_utc - self.available_after).floor(_RUN_EVERY)
        missing = ""
        for back in range(_RUNS_BACK):
            issued = newest - back * _RUN_EVERY
            missing = self._missing_index(issued)
            if not missing:
                if back:
                    log.warning("%s: using the run issued %s instead", self.label,
                                issued.isoformat())  # fmt: skip
                return RunRef(self.run_model, issued, issued + self.available_after)
            log.warning(
                "%s: the run issued %s is not on the server (HTTP 404 for %s: not published "
                "yet, or no longer kept); trying the run before", self.label,
                issued.isoformat(), missing,
            )  # fmt: skip
        oldest = newest - (_RUNS_BACK - 1) * _RUN_EVERY
        raise ForecastSourceError(
            f"{self.label}: {missing}: HTTP 404 Not Found; none of the runs issued "
            f"{oldest:%Y-%m-%d %H}Z to {newest:%Y-%m-%d %H}Z is on the server (data.ecmwf.int "
            "keeps the last few days; forecast.nwp.ecmwf.source 'aws' or 'google' keeps more)"
        )

    def _missing_index(self, issued_at: pd.Timestamp) -> str:
        """The URL of an index of the run's last step the server does not have (HTTP 404), or
        ``""`` when the run is cached or every index of its last step is there."""
        if issued_at in self._published:
            return ""
        parts = [p for p in self._parts(issued_at) if not self._cached(issued_at, p).exists()]
        settings = self.settings
        head = robust(self._client.session.head, settings.retries + 1, settings.retry_wait_s)
        for part in parts:
            for data_url in self._urls({**part.request, "step": self.steps()[-1]}):
                index_url = os.path.splitext(data_url)[0] + ".index"
                with self._errors(index_url):
                    response = head(index_url, allow_redirects=True)
                    if response.status_code == requests.codes.not_found:
                        return index_url
                    response.raise_for_status()
        self._published.add(issued_at)
        return ""

    # --- read -------------------------------------------------------------------------------

    def read(
        self, ref: RunRef, sites: Mapping[str, SupplySite], slot_minutes: int
    ) -> dict[str, ForecastRun]:
        paths = [self._fetch(ref.issued_at, part) for part in self._parts(ref.issued_at)]
        points = {name: (site.latitude, site.longitude) for name, site in sites.items()}
        read = partial(read_grib_members, issued_at=ref.issued_at, points=points,
                       max_distance_km=self.max_distance_km, keep_index=True)  # fmt: skip
        if self.ensemble:
            (control,) = read(paths[:1]).values()  # the deterministic run, or type cf
            members = {"c00": control, **read(paths[1:])}
        else:
            members = read(paths)
        return site_runs(
            members, model=ref.model, issued_at=ref.issued_at, source=self.label, sites=sites,
            slot_minutes=slot_minutes,
        )  # fmt: skip

    def refresh(self) -> None:
        """Nothing to scan: :meth:`latest` asks the server each time."""

    def _fetch(self, issued_at: pd.Timestamp, part: _Part) -> Path:
        """The cached file of one part of a run, fetched first when it is not there: step by
        step (so an error names the step's URL), each checked complete, into a temporary
        directory beside it, then renamed into place."""
        path = self._cached(issued_at, part)
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fetching-", dir=path.parent) as work:
            whole = Path(work) / path.name
            with open(whole, "wb") as out:
                for step in self.steps():
                    request = {**part.request, "step": step}
                    url = self._urls(request)[0]
                    piece = Path(work) / f"{step}h.grib2"
                    with self._errors(url):
                        self._client.retrieve(request=request, target=str(piece))
                    self._check_complete(piece, part, step, url)
                    with open(piece, "rb") as fields:
                        shutil.copyfileobj(fields, out)
                    piece.unlink()
            os.replace(whole, path)
        log.info("%s: fetched %s of the run issued %s (%.1f MB) into %s", self.label,
                 part.file_name, issued_at.isoformat(), path.stat().st_size / 1e6,
                 path)  # fmt: skip
        return path

    def _check_complete(self, path: Path, part: _Part, step: int, url: str) -> None:
        """Raise when a step's fetched file lacks a required field (of a member)."""
        found = _fields(path, f"{self.label}: {url}")
        members: tuple[int | None, ...] = part.member_numbers or (None,)
        numbers = sorted({number for _, _, number in found if number is not None})
        for param in PARAMS:
            missing = [number for number in members if (param, step, number) not in found]
            if not missing:
                continue
            if missing[0] is not None and missing[0] not in numbers:
                has = f"members {numbers[0]} to {numbers[-1]}" if numbers else "no members"
                raise ForecastSourceError(
                    f"{self.label}: {url}: no member {missing[0]} (the run has {has}; "
                    f"forecast.nwp.ecmwf.ensemble_members asks for {len(members)})"
                )
            where = f"step {step} h" + (f" of member {missing[0]}" if missing[0] else "")
            if param in REQUIRED_PARAMS:
                raise ForecastSourceError(
                    f"{self.label}: {url}: the run has no {param} at {where}; it needs "
                    f"{', '.join(REQUIRED_PARAMS)} at every step"
                )
            log.info("%s: the run has no %s at %s; going without it", self.label, param, where)

    @contextmanager
    def _errors(self, url: str) -> Iterator[None]:
        """Failures of the client and the network as one-line :class:`ForecastSourceError`s
        naming the source, the URL and the reason."""
        try:
            yield
        except requests.HTTPError as error:
            response = error.response
            if response is None:
                raise ForecastSourceError(f"{self.label}: {url}: {_one_line(str(error))}") from None
            raise ForecastSourceError(
                f"{self.label}: {response.url}: HTTP {response.status_code} {response.reason}"
            ) from None
        except requests.Timeout as error:
            raise ForecastSourceError(
                f"{self.label}: {_request_url(error, url)}: no answer within "
                f"{self.settings.timeout_s:g} s"
            ) from None
        except requests.RequestException as error:
            raise ForecastSourceError(
                f"{self.label}: {_request_url(error, url)}: {_reason(error)}"
            ) from None
        except AssertionError as error:
            # multiurl checks the sizes and byte ranges it receives with asserts
            raise ForecastSourceError(
                f"{self.label}: {url}: download cut short or garbled ({_one_line(str(error))})"
            ) from None
        except ValueError as error:
            # the client's own checks: unknown values, no index entries matching the request
            raise ForecastSourceError(f"{self.label}: {url}: {_one_line(str(error))}") from None


def _request_url(error: requests.RequestException, default: str) -> str:
    request = error.request
    return str(request.url) if request is not None and request.url else default


def _reason(error: requests.RequestException) -> str:
    """Why a request failed, in a few words (urllib3's innermost reason, without the
    connection object it names)."""
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return f"download cut short ({_one_line(str(error))})"
    cause = getattr(error.args[0], "reason", None) if error.args else None
    text = re.sub(r"^<[^>]*>: ", "", _one_line(str(error if cause is None else cause)))
    if isinstance(error, requests.ConnectionError):
        errno = re.search(r"\[Errno -?\d+\] [^)'\"]+", text)
        return f"cannot connect ({errno.group(0).strip() if errno else text})"
    return text


def _fields(path: Path, source: str) -> set[tuple[str, int, int | None]]:
    """``(shortName, step [h], member number or None)`` of every GRIB message in ``path``."""
    found: set[tuple[str, int, int | None]] = set()
    with open(path, "rb") as handle:
        while True:
            try:
                message = eccodes.codes_grib_new_from_file(handle)
            except eccodes.CodesInternalError as error:
                raise ForecastSourceError(
                    f"{source}: download cut short or garbled ({error})"
                ) from None
            if message is None:
                return found
            try:
                number = (
                    int(eccodes.codes_get(message, "number"))
                    if eccodes.codes_is_defined(message, "number") else None
                )  # fmt: skip
                found.add((
                    str(eccodes.codes_get(message, "shortName")),
                    int(eccodes.codes_get(message, "endStep")),
                    number if eccodes.codes_get(message, "dataType") == "pf" else None,
                ))  # fmt: skip
            finally:
                eccodes.codes_release(message)
