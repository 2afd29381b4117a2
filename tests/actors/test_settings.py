"""Settings: environment over file, one clear error naming the setting, embedded defaults."""

from __future__ import annotations

import pytest

from actors.settings import SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for name in ("RAY_ADDRESS", "REDIS_URL", "DATABASE_URL", "MLFLOW_TRACKING_URI",
                 "SELFHEAL_DATA_DIR", "SELFHEAL_PSEUDONYM_KEY", "SELFHEAL_METRICS_SAMPLE_RATE",
                 "SELFHEAL_ACTOR_RESOURCES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.mark.parametrize("env,value,setting", [
    ("REDIS_URL", "http://127.0.0.1", "REDIS_URL"),
    ("DATABASE_URL", "mysql://root@localhost/x", "DATABASE_URL"),
    ("DATABASE_URL", "::not a url::", "DATABASE_URL"),
    ("SELFHEAL_METRICS_SAMPLE_RATE", "1.5", "SELFHEAL_METRICS_SAMPLE_RATE"),
    ("SELFHEAL_PSEUDONYM_KEY", "short", "SELFHEAL_PSEUDONYM_KEY"),
    ("SELFHEAL_ACTOR_RESOURCES", '{"selfheal": 2}', "SELFHEAL_ACTOR_RESOURCES"),
    ("SELFHEAL_ACTOR_RESOURCES", "selfheal", "SELFHEAL_ACTOR_RESOURCES"),
    ("SELFHEAL_API_REPLICAS", "0", "SELFHEAL_API_REPLICAS"),
])
def test_a_bad_environment_value_names_the_setting_and_its_source(monkeypatch, env, value,
                                                                   setting):
    monkeypatch.setenv(env, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    msg = str(err.value)
    assert f"environment variable {env}" in msg and setting in msg
    if env == "SELFHEAL_PSEUDONYM_KEY":
        assert value not in msg  # a secret is never echoed back


def test_a_bad_file_value_names_the_file_and_setting(tmp_path):
    (tmp_path / "selfheal.toml").write_text('metrics_sample_rate = "often"\n')
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "selfheal.toml" in str(err.value) and "metrics_sample_rate" in str(err.value)


def test_unknown_settings_and_broken_toml_are_errors(tmp_path):
    (tmp_path / "selfheal.toml").write_text("redis_ur = 'redis://x'\n")
    with pytest.raises(SettingsError, match="redis_ur"):
        load_settings()
    (tmp_path / "bad.toml").write_text("redis_url = \n")
    with pytest.raises(SettingsError, match=r"not valid TOML.*line 1"):
        load_settings(tmp_path / "bad.toml")
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    # a file saved in another encoding, and a folder, were tracebacks
    (tmp_path / "latin.toml").write_bytes('redis_url = "redis://Ärzte"\n'.encode("latin-1"))
    with pytest.raises(SettingsError, match=r"latin\.toml: settings file is not UTF-8 text "
                                            r"\(byte 0xc4\)"):
        load_settings(tmp_path / "latin.toml")
    with pytest.raises(SettingsError, match=r"settings file cannot be read \(Is a directory\)"):
        load_settings(tmp_path)


def test_environment_wins_over_the_file(monkeypatch, tmp_path):
    (tmp_path / "selfheal.toml").write_text('redis_url = "redis://file:6379"\n'
                                            'metrics_sample_rate = 0.5\n')
    monkeypatch.setenv("REDIS_URL", "redis://env:6379")
    s = load_settings()
    assert s.redis_url == "redis://env:6379" and s.metrics_sample_rate == 0.5


def test_embedded_defaults_live_under_the_data_dir_and_survive_a_restart(monkeypatch,
                                                                         tmp_path):
    monkeypatch.setenv("SELFHEAL_DATA_DIR", str(tmp_path / "data"))
    s = load_settings()
    assert s.audit_database_url() == f"sqlite:///{tmp_path / 'data' / 'audit.db'}"
    key = s.pseudonym_key_bytes()
    assert len(key) == 64 and load_settings().pseudonym_key_bytes() == key
    assert (tmp_path / "data" / "pseudonym.key").stat().st_mode & 0o077 == 0


def test_actor_placement_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("SELFHEAL_ACTOR_RESOURCES", '{"selfheal": 0.01}')
    assert load_settings().actor_resources == {"selfheal": 0.01}
