from __future__ import annotations

from pathlib import Path

import pytest

from realtime.bayeux.errors import ConfigError
from realtime.settings import Settings, load_settings


def test_defaults_come_from_the_shipped_file() -> None:
    s = load_settings(env={})
    assert s.mount == "/bayeux" and s.port == 8000 and s.timeout_s == 45.0
    assert s.session_expiry_s == 90.0


def test_env_then_overrides_win(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[bayeux]\ntimeout_s = 10\n[limits]\nmax_batch_messages = 7\n[feeds]\ngroups = ["x"]\n')
    s = load_settings(
        cfg,
        env={"REALTIME_TIMEOUT_S": "20", "REALTIME_CORS_ORIGINS": "https://a,https://b"},
        overrides={"timeout_s": 30.0, "port": None},
    )
    assert s.timeout_s == 30.0 and s.max_batch_messages == 7
    assert s.cors_origins == ("https://a", "https://b")
    assert s.extra == {"feeds": {"groups": ["x"]}}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REALTIME_NOPE": "1"}, "unknown setting"),
        ({"REALTIME_PORT": "eighty"}, "cannot read"),
        ({"REALTIME_MOUNT": "bayeux"}, "mount"),
        ({"REALTIME_TIMEOUT_S": "0"}, "timeout_s"),
        ({"REALTIME_MAX_QUEUE_MESSAGES": "0"}, "max_queue_messages"),
        ({"REALTIME_FEEDS_CACHE_MB": "0"}, "feeds_cache_mb"),
    ],
)
def test_bad_settings_fail_loudly(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml", env={})


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError):
        Settings().port = 1  # type: ignore[misc]
