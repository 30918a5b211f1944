"""Config loading: the default is valid; every bad case names the file, the field and the rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from scheduler.config import DEFAULT_CONFIG_PATH, ConfigError, load_config


def _write_variant(tmp_path: Path, edit) -> Path:
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_config_matches_design_sites(config):
    assert set(config.sites) == {"qingyang", "shantou"}
    qy, st = config.sites["qingyang"], config.sites["shantou"]
    assert (qy.gpus, st.gpus) == (16000, 8000)
    assert qy.latency_ms["singapore"] > st.latency_ms["singapore"]
    assert config.timezone == "Asia/Shanghai"
    # renewable capacity of the same order as the site's load, so following it matters
    for site in (qy, st):
        green = site.pv_capacity_mw_ac + site.wind_capacity_mw
        assert 0.5 < green / site.full_load_mw < 5


def test_site_power_units_kw_to_mw(config):
    # 16,000 GPUs x 1.2 kW x PUE 1.15 = 22.08 MW (+ 1.5 MW base): a kW/MW slip is 1000x off
    qy = config.sites["qingyang"]
    assert qy.mw_per_gpu == pytest.approx(1.2 * 1.15 / 1000)
    assert qy.full_load_mw == pytest.approx(22.08 + 1.5)


def test_unknown_turbine_names_field_and_close_matches(tmp_path):
    def edit(d):
        d["sites"]["shantou"]["wind"]["nanao_offshore"]["turbine_type"] = "V164/800"

    path = _write_variant(tmp_path, edit)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "sites.shantou.wind.nanao_offshore.turbine_type" in message
    assert "not in windpowerlib's turbine library" in message
    assert "V164/8000" in message  # a close match is offered


def test_unknown_key_is_an_error_not_ignored(tmp_path):
    path = _write_variant(tmp_path, lambda d: d["sites"]["qingyang"].update(gpu_count=3))
    with pytest.raises(ConfigError, match=r"sites\.qingyang\.gpu_count: unknown key"):
        load_config(path)


def test_missing_field_and_bad_range(tmp_path):
    def edit(d):
        del d["sites"]["qingyang"]["pue"]
        d["sites"]["shantou"]["pv"]["rooftop_and_fishpond_pv"]["tilt_deg"] = 120

    with pytest.raises(ConfigError) as info:
        load_config(_write_variant(tmp_path, edit))
    message = str(info.value)
    assert "sites.qingyang.pue: required field is missing" in message
    assert "sites.shantou.pv.rooftop_and_fishpond_pv.tilt_deg: 120" in message
    assert "less than or equal to 90" in message


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: d["sites"]["qingyang"].update(timezone="Asia/Qingyang"),
            "not an IANA time zone",
        ),
        (lambda d: d["sites"]["qingyang"].update(carbon_kg_per_mwh=[500] * 23), "needs 24 values"),
        (
            lambda d: d["sites"]["qingyang"].update(grid_import_limit_mw=1.0),
            "must exceed base_load_mw",
        ),
        (lambda d: d["forecast"].update(slot_minutes=7), "do not tile the hour"),
        (
            lambda d: d["workload"]["classes"]["medium"].update(sites=["shanto"]),
            "unknown site 'shanto'; known sites: qingyang, shantou",
        ),
        (
            lambda d: d["sites"]["qingyang"]["pv"]["loess_plateau_pv"].update(capacity_mw_dc=100),
            "DC/AC ratio",
        ),
        (lambda d: d["sites"]["qingyang"].update(name="other"), "differs from its key"),
        (
            lambda d: d["forecast"]["intraday"][0].update(wind_nrmse=0.2),
            r"bad.yaml: invalid configuration\n  forecast: intraday: wind_nrmse must be >= 0 "
            r"and grow with the lead up to the day-ahead 0.15, got \[0.2, 0.08",
        ),
        (
            lambda d: d["forecast"]["intraday"][1].update(lead_hours=0.5),
            r"forecast: intraday: lead_hours must be positive and increasing, got \[1.0, 0.5",
        ),
        (
            lambda d: d["forecast"]["intraday"][0].pop("pv_nrmse"),
            r"forecast.intraday.0.pv_nrmse: required field is missing",
        ),
        (
            lambda d: d["forecast"].update(nwp={"sources": {"shanto": "runs/"}}),
            "forecast.nwp.sources: unknown site 'shanto'; known sites: qingyang, shantou",
        ),
        (
            lambda d: d["forecast"].update(nwp={"ensemble_spread_factor": 0}),
            "forecast.nwp.ensemble_spread_factor: 0: Input should be greater than 0",
        ),
    ],
)
def test_bad_values_are_explained(tmp_path, edit, expected):
    with pytest.raises(ConfigError, match=expected):
        load_config(_write_variant(tmp_path, edit))


def test_unreadable_and_non_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("sites: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_forecast_sources_are_read_beside_the_config(tmp_path):
    """A relative path under forecast.nwp.sources is the config's folder's, not the shell's."""
    (tmp_path / "runs").mkdir()
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["forecast"]["nwp"] = {"sources": {"qingyang": "runs", "shantou": "synthetic"}}
    path = tmp_path / "sites.yaml"
    path.write_text(yaml.safe_dump(data))
    sources = load_config(path).forecast.nwp.sources
    assert sources == {"qingyang": str(tmp_path / "runs"), "shantou": "synthetic"}
