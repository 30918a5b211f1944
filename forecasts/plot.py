"""Charts with one panel per site over local time; :func:`plot_supply` draws a supply table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from scheduler.contracts.carriers import CARRIERS

__all__ = ["local_times", "plot_supply", "site_panels"]

_COLORS = {"pv": "#f2b705", "wind": "#3a7ca5"}  # a carrier without one is grey


def local_times(times: pd.Series | pd.DatetimeIndex, timezone: str) -> pd.DatetimeIndex:
    """UTC times as naive local times, for an x axis in the sites' zone."""
    return pd.DatetimeIndex(pd.to_datetime(times, utc=True)).tz_convert(timezone).tz_localize(None)


def site_panels(
    sites: Sequence[str],
    path: str | Path,
    draw: Callable[[plt.Axes, str], None],
    timezone: str = "UTC",
    title: str = "",
) -> Path:
    """Write a PNG with one panel per site, ``draw(ax, site)`` filling each; MW on the y axis."""
    fig, axes = plt.subplots(
        len(sites), 1, figsize=(11, 3.2 * len(sites)), sharex=True, squeeze=False
    )
    for ax, site in zip(axes[:, 0], sites, strict=True):
        draw(ax, site)
        ax.set_ylabel("MW")
        ax.set_title(site, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize="small")
    axes[-1, 0].set_xlabel(f"local time ({timezone})")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_supply(
    supply: pd.DataFrame, path: str | Path, timezone: str = "UTC", title: str = ""
) -> Path:
    """Each carrier's output [MW] stacked per site, with the p10/p90 green lines when
    present."""

    def draw(ax: plt.Axes, site: str) -> None:
        part = supply[supply["site"] == site]
        local = local_times(part["time"], timezone)
        ax.stackplot(local, *(part[c.column] for c in CARRIERS), labels=[c.label for c in CARRIERS],
                     colors=[_COLORS.get(c.name, "#8c8c8c") for c in CARRIERS], alpha=0.85,
                     step="post")  # fmt: skip
        if {"green_mw_p10", "green_mw_p90"} <= set(part.columns):
            for column, style in (("green_mw_p10", ":"), ("green_mw_p90", "--")):
                ax.step(local, part[column], where="post", color="black", lw=0.7, ls=style,
                        label=column.removeprefix("green_mw_") + " green")  # fmt: skip

    return site_panels(list(dict.fromkeys(supply["site"])), path, draw, timezone, title)
