"""The salt of the personal-data hashes: configured in production, generated once per home otherwise."""

import stat
from concurrent.futures import ThreadPoolExecutor

from resources import build_resources
from resources.privacy import home_salt


def test_a_home_without_a_configured_salt_generates_its_own_once(home, monkeypatch):
    monkeypatch.delenv("PLATFORM_PII_SALT", raising=False)
    privacy = build_resources()["privacy"]
    salt = privacy.salt()
    path = home / "secrets" / "pii_salt"
    assert path.read_text() == salt and len(salt) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert build_resources()["privacy"].salt() == salt  # kept: hashes stay joinable across runs
    assert salt != "churn-platform-local-salt"  # the salt committed before


def test_two_homes_get_different_salts(tmp_path):
    assert home_salt(tmp_path / "a" / "pii_salt") != home_salt(tmp_path / "b" / "pii_salt")


def test_concurrent_first_uses_agree_on_one_salt(tmp_path):
    path = tmp_path / "secrets" / "pii_salt"
    with ThreadPoolExecutor(8) as pool:
        salts = set(pool.map(lambda _: home_salt(path), range(32)))
    assert salts == {path.read_text()}
    assert [p.name for p in path.parent.iterdir()] == ["pii_salt"]


def test_a_configured_salt_wins_and_is_not_written(home, monkeypatch):
    monkeypatch.setenv("PLATFORM_PII_SALT", "production-secret")
    privacy = build_resources()["privacy"]
    assert "production-secret" not in privacy.model_dump_json()  # the UI shows the variable, not the value
    assert privacy.process_config_and_initialize().salt() == "production-secret"
    assert not (home / "secrets").exists()
