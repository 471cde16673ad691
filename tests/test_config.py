"""Settings: CLI over environment over the config file's [settings] over defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import load_settings


def test_defaults_file_environment_and_flags_stack_in_that_order(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "models.toml"
    config.write_text('[settings]\nport = 9000\nrequest_wait_s = 1.5\nmedia_ttl_s = 60\n')
    monkeypatch.setenv("APPLIANCE_REQUEST_WAIT_S", "2.5")
    settings = load_settings(config, port=9100, host=None)
    assert settings.port == 9100  # flag beats file
    assert settings.request_wait_s == 2.5  # environment beats file
    assert settings.media_ttl_s == 60  # file beats default
    assert settings.host == "127.0.0.1"  # default; a None flag means "not given"


def test_the_database_and_sockets_live_in_the_state_dir(tmp_path: Path) -> None:
    settings = load_settings(None, state_dir=Path("/var/lib/appliance"))
    assert settings.effective_database_url == "sqlite:////var/lib/appliance/appliance.db"
    assert settings.socket_dir == Path("/var/lib/appliance/sockets")


def test_sockets_move_to_a_short_private_path_when_the_state_dir_is_deep(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 80)
    socket_dir = load_settings(None, state_dir=deep).socket_dir
    assert len(str(socket_dir)) <= 50 and socket_dir != deep / "sockets"
    assert socket_dir == load_settings(None, state_dir=deep).socket_dir  # stable across restarts
    assert socket_dir != load_settings(None, state_dir=tmp_path / "other").socket_dir


def test_an_unknown_or_bad_setting_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "models.toml"
    config.write_text('[settings]\nprot = 9000\n')
    with pytest.raises(ValueError, match="prot"):
        load_settings(config)
    with pytest.raises(ValueError, match="port"):
        load_settings(None, port=70000)
