"""Chart of a supply table: stacked PV and wind per site over local time."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["plot_supply"]


def plot_supply(
    supply: pd.DataFrame, path: str | Path, timezone: str = "UTC", title: str = ""
) -> Path:
    """Write a PNG with one panel per site: PV and wind [MW] stacked, p10-p90 band if present."""
    sites = list(dict.fromkeys(supply["site"]))
    fig, axes = plt.subplots(
        len(sites), 1, figsize=(11, 3.2 * len(sites)), sharex=True, squeeze=False
    )
    for ax, site in zip(axes[:, 0], sites, strict=True):
        part = supply[supply["site"] == site]
        local = pd.DatetimeIndex(part["time"]).tz_convert(timezone).tz_localize(None)
        ax.stackplot(
            local,
            part["pv_mw"],
            part["wind_mw"],
            labels=["PV", "wind"],
            colors=["#f2b705", "#3a7ca5"],
            alpha=0.85,
            step="post",
        )
        if {"green_mw_p10", "green_mw_p90"} <= set(part.columns):
            for column, style in (("green_mw_p10", ":"), ("green_mw_p90", "--")):
                ax.step(
                    local,
                    part[column],
                    where="post",
                    color="black",
                    lw=0.7,
                    ls=style,
                    label=column.removeprefix("green_mw_") + " green",
                )
        ax.set_ylabel("MW")
        ax.set_title(f"{site}", loc="left")
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
