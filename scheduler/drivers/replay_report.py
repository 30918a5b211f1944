"""The replay report: a Markdown page with charts, from ``daily.csv`` and ``summary.json``."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from forecasts.plot import local_times, site_panels  # also selects the Agg backend

__all__ = [
    "OBJECTIVE_NOTE",
    "RAMP_COLUMNS",
    "gain_text",
    "per_site",
    "ramp_cells",
    "summary_lines",
    "write_replay_report",
]

SUMMARY_COLUMNS = ("policy", "green share", "grid MWh", "CO2 t", "cost", "unused green MWh",
                   "stored green MWh", "late job-days", "unfinished GPU-h at end", "solve s",
                   "largest step MW", "total swing MW", "slots over ramp")  # fmt: skip
RAMP_COLUMNS = SUMMARY_COLUMNS[-3:]


OBJECTIVE_NOTE = (
    "Above 100 %: green share is not what the policies optimise. The optimizer and the oracle "
    "minimise grid CO2 (green share follows it closely, not exactly), so a plan made on the "
    "forecast can pass the perfect-foresight oracle on green share while emitting more CO2; "
    "compare the CO2 column."
)


def gain_text(share: float) -> str:
    """A share of the oracle's gain as shown: one decimal, so 1.004 reads 100.4 %, not 100 %."""
    return f"{share:.1%}"


def per_site(values: dict[str, float], spec: str) -> str:
    """One cell for a value per site, ``"a / b"`` in site order, each formatted with ``spec``."""
    return " / ".join(format(v, spec) for v in values.values())


def ramp_cells(ramps: dict[str, dict[str, float]]) -> list[str]:
    """Cells of :data:`RAMP_COLUMNS` from ``{site: {largest_step_mw, total_swing_mw,
    slots_over_ramp}}``, per site in site order."""
    return [
        per_site({s: r[key] for s, r in ramps.items()}, spec)
        for key, spec in (
            ("largest_step_mw", ".1f"),
            ("total_swing_mw", ",.0f"),
            ("slots_over_ramp", "d"),
        )
    ]


def summary_lines(summary: dict) -> list[list[str]]:
    """The per-policy summary as text cells in :data:`SUMMARY_COLUMNS` order (CLI and bench);
    the load-step cells hold one value per site (``a / b``)."""
    return [
        [
            name,
            f"{row['green_share']:.1%}",
            f"{row['grid_mwh']:,.0f}",
            f"{row['co2_t']:,.0f}",
            f"{row.get('cost', 0.0):,.0f}",
            f"{row['green_unused_mwh']:,.0f}",
            f"{row.get('storage_discharged_mwh', 0.0):,.0f}",
            str(row["late_job_days"]),
            f"{row['unfinished_gpu_hours_at_end']:,.1f}",
            f"{row['solve_seconds']:.1f}",
            *ramp_cells(row.get("ramps", {})),
        ]
        for name, row in summary["policies"].items()
    ]


def _green_share_by_month(daily: pd.DataFrame, path: Path) -> None:
    month = pd.to_datetime(daily["day"]).dt.to_period("M").astype(str)
    sums = (
        daily.assign(month=month)
        .groupby(["month", "policy"], sort=True)[["green_used_mwh", "energy_used_mwh"]]
        .sum()
    )
    share = (sums["green_used_mwh"] / sums["energy_used_mwh"]).unstack("policy")
    ax = share.plot(marker="o", figsize=(9, 4))
    ax.set_ylabel("green share (energy-weighted)")
    ax.set_title("green share by month per policy")
    ax.grid(alpha=0.3)
    ax.figure.tight_layout()
    ax.figure.savefig(path, dpi=100)
    plt.close(ax.figure)


def _daily_gain(daily: pd.DataFrame, path: Path) -> None:
    share = daily.pivot(index="day", columns="policy", values="green_share")
    fig, ax = plt.subplots(figsize=(9, 4))
    for policy in [p for p in ("greedy", "optimizer", "oracle") if p in share]:
        ax.hist((share[policy] - share["fifo"]) * 100, bins=30, alpha=0.5, label=policy)
    ax.set_xlabel("daily green share gain over fifo [percentage points]")
    ax.set_ylabel("days")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def typical_week(daily: pd.DataFrame, policy: str = "optimizer") -> list[str]:
    """The 7 consecutive days whose mean green share under ``policy`` is nearest the median day.

    All days when there are fewer than 7.
    """
    share = daily[daily["policy"] == policy].set_index("day")["green_share"].sort_index()
    if len(share) <= 7:
        return share.index.tolist()
    weekly = share.rolling(7).mean().dropna()
    end = (weekly - share.median()).abs().idxmin()
    position = share.index.get_loc(end)
    return share.index[position - 6 : position + 1].tolist()


def _week_of_load(site_load: pd.DataFrame, days: list[str], path: Path, timezone: str) -> None:
    load = site_load.drop_duplicates(["policy", "time", "site"], keep="last")
    local = local_times(load["time"], timezone)
    in_week = local.strftime("%Y-%m-%d").isin(days)
    week = load[in_week].assign(local=local[in_week])

    def draw(ax, site: str) -> None:
        part = week[week["site"] == site]
        supply = part.drop_duplicates("time")
        ax.fill_between(supply["local"], 0, supply["green_mw"], step="post",
                        color="#2a9d8f", alpha=0.3, label="green supply (actual)")  # fmt: skip
        for policy, style in (("fifo", ":"), ("optimizer", "-")):
            rows = part[part["policy"] == policy]
            if not rows.empty:
                ax.step(rows["local"], rows["load_mw"], where="post", ls=style, color="black",
                        lw=0.9, label=f"load, {policy}")  # fmt: skip

    site_panels(list(dict.fromkeys(week["site"])), path, draw, timezone)


def write_replay_report(
    out_dir: Path, daily: pd.DataFrame, summary: dict, timezone: str = "UTC"
) -> Path:
    """Write ``report.md`` with the summary table and charts beside it; return its path."""
    charts = []
    load_path = out_dir / "site_load.csv"
    if load_path.exists() and "optimizer" in set(daily["policy"]):
        week = typical_week(daily)
        _week_of_load(pd.read_csv(load_path), week, out_dir / "typical_week.png", timezone)
        charts.append((f"A typical week: supply vs load per site ({week[0]} to {week[-1]})",
                       "typical_week.png"))  # fmt: skip
    if "fifo" in set(daily["policy"]):
        _daily_gain(daily, out_dir / "daily_gain.png")
        charts.append(("Distribution of the daily gain over fifo", "daily_gain.png"))
    _green_share_by_month(daily, out_dir / "green_share_by_month.png")
    charts.insert(0, ("Green share by month", "green_share_by_month.png"))

    lines = [
        "# greensched replay",
        "",
        f"{daily['day'].min()} to {daily['day'].max()}, {daily['day'].nunique()} days. "
        "Plans are made on the day-ahead forecast (the oracle on actual supply) and settled "
        "on the actual supply; unfinished work carries into the next day.",
        "",
        "| policy | green share | grid MWh | CO2 t | cost | unused green MWh | stored green MWh "
        "| late job-days | unfinished at end GPU-h | cap violations | solve s |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, row in summary["policies"].items():
        lines.append(
            f"| {name} | {row['green_share']:.1%} | {row['grid_mwh']:,.0f} | {row['co2_t']:,.0f} "
            f"| {row.get('cost', 0.0):,.0f} | {row['green_unused_mwh']:,.0f} "
            f"| {row.get('storage_discharged_mwh', 0.0):,.0f} | {row['late_job_days']} "
            f"| {row['unfinished_gpu_hours_at_end']:,.1f} | {row['cap_violations']} "
            f"| {row['solve_seconds']:.1f} |"
        )
    share = summary.get("optimizer_share_of_oracle_gain")
    if share is not None:
        gain = gain_text(share)
        lines += ["", f"The optimizer achieves **{gain}** of the oracle's gain over fifo in green "
                  "share."]  # fmt: skip
        if share > 1.0:
            lines.append(OBJECTIVE_NOTE)
    sites = next((list(r["ramps"]) for r in summary["policies"].values() if "ramps" in r), [])
    if sites:
        lines += [
            "",
            f"Settled load steps between adjacent slots, per site ({' / '.join(sites)}):"
            " the largest step, the total swing (sum of absolute steps) and the slots whose step"
            " is above the site's ramp limit.",
            "",
            "| policy | " + " | ".join(RAMP_COLUMNS) + " |",
            "| --- |" + " ---: |" * len(RAMP_COLUMNS),
        ]
        for name, row in summary["policies"].items():
            lines.append(f"| {name} | " + " | ".join(ramp_cells(row.get("ramps", {}))) + " |")
    for note in summary.get("notes", []):
        lines.append(f"\n_{note}_")
    for title, name in charts:
        lines += ["", f"## {title}", "", f"![{title}]({name})"]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
