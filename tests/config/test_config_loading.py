"""The configuration file: defaults, overrides, and errors that name the key and the file."""

from __future__ import annotations

import pytest

from app.config import ConfigError, load_config


def write(tmp_path, text: str):
    path = tmp_path / "quarterdeck.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_sqlite_in_the_working_directory_and_no_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(environ={})
    assert config.store.url == "sqlite:///quarterdeck.db"
    assert config.consul is None and config.static_services == () and config.haproxy == ()
    assert config.demo is False


def test_a_full_file_is_read_into_typed_sections(tmp_path):
    path = write(
        tmp_path,
        """
[store]
url = "postgresql+psycopg://qd@db/quarterdeck"
[server]
bind = "0.0.0.0:9000"
[consul]
url = "https://consul.internal:8501"
token_env = "MY_CONSUL_TOKEN"
datacenter = "eu1"
[[haproxy]]
name = "edge"
stats_url = "http://127.0.0.1:8404/stats;csv"
runtime = "tcp://127.0.0.1:9999"
[[nginx]]
name = "push"
status_url = "http://127.0.0.1:8081/nginx_status"
reload = ["nginx", "-s", "reload"]
[[static_services]]
name = "orders"
instances = ["10.0.0.5:8000", "10.0.0.6:8000"]
[collect]
interval_s = 5
[retention]
audit_d = 0
""",
    )
    config = load_config(path, environ={})
    assert config.server.bind == "0.0.0.0:9000"
    assert config.consul.datacenter == "eu1" and config.consul.token_env == "MY_CONSUL_TOKEN"
    assert config.haproxy[0].runtime == "tcp://127.0.0.1:9999"
    assert config.nginx[0].reload == ("nginx", "-s", "reload")
    assert config.static_services[0].instances == ("10.0.0.5:8000", "10.0.0.6:8000")
    assert config.collect.interval_s == 5


def test_environment_overrides_a_key_of_the_file(tmp_path):
    path = write(tmp_path, '[collect]\ninterval_s = 5\n[consul]\nurl = "http://a:8500"\n')
    config = load_config(
        path,
        environ={
            "QUARTERDECK_COLLECT_INTERVAL_S": "30",
            "QUARTERDECK_CONSUL_URL": "http://b:8500",
            "QUARTERDECK_SERVER_COOKIE_SECURE": "false",
        },
    )
    assert config.collect.interval_s == 30
    assert config.consul.url == "http://b:8500"
    assert config.server.cookie_secure is False


def test_config_path_comes_from_the_environment_variable(tmp_path):
    path = write(tmp_path, '[server]\nbind = "127.0.0.1:7000"\n')
    config = load_config(environ={"QUARTERDECK_CONFIG": str(path)})
    assert config.server.bind == "127.0.0.1:7000"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        (
            '[consul]\nurl = "http://x:8500"\ntokn_env = "T"\n',
            ["unknown key 'tokn_env'", "[consul]"],
        ),
        ('[consol]\nurl = "http://x"\n', ["unknown section [consol]"]),
        ('[collect]\ninterval_s = "ten"\n', ["[collect] interval_s", "must be an integer"]),
        ("[server]\ncookie_secure = 1\n", ["[server] cookie_secure", "true or false"]),
        ('[consul]\nurl = "ftp://x:8500"\n', ["[consul] url", "http://"]),
        ('[store]\nurl = "mysql://x/db"\n', ["[store] url", "sqlite://"]),
        (
            '[[haproxy]]\nname = "e"\nstats_url = "http://h/s"\nruntime = "tcp://h"\n',
            ["[haproxy[0]] runtime", "no port"],
        ),
        ('[[haproxy]]\nname = "e"\n', ["[haproxy[0]]", "missing required key 'stats_url'"]),
        ('[[static_services]]\nname = "o"\ninstances = ["nohost"]\n', ["'nohost'", "HOST:PORT"]),
        ('[server]\nbind = "8080"\n', ["[server] bind", "HOST:PORT"]),
        ('[auth]\nheader = "X-Forwarded-User"\n', ["[auth] header", "trusted_proxies"]),
        ('[auth]\nheader = "X-User"\ntrusted_proxies = ["not-an-ip"]\n', ["not-an-ip"]),
        ("[store\nurl=1", ["not valid TOML"]),
        (
            '[[nginx]]\nname = "p"\nstatus_url = "http://h/s"\n[[nginx]]\nname = "p"\nstatus_url = "http://h/t"\n',
            ["'p' is used twice"],
        ),
    ],
)
def test_a_bad_file_is_refused_with_the_key_and_the_file_named(tmp_path, text, fragments):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as raised:
        load_config(path, environ={})
    message = str(raised.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_a_bad_environment_override_names_the_variable(tmp_path):
    path = write(tmp_path, "")
    with pytest.raises(ConfigError, match="QUARTERDECK_COLLECT_INTERVAL_S"):
        load_config(path, environ={"QUARTERDECK_COLLECT_INTERVAL_S": "often"})
    with pytest.raises(ConfigError, match="unknown key 'colour'"):
        load_config(path, environ={"QUARTERDECK_SERVER_COLOUR": "blue"})


def test_a_named_file_that_does_not_exist_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml", environ={})


def test_a_secret_variable_named_like_an_override_is_left_to_its_env_key(tmp_path):
    path = write(
        tmp_path, '[consul]\nurl = "http://a:8500"\ntoken_env = "QUARTERDECK_CONSUL_TOKEN"\n'
    )
    config = load_config(path, environ={"QUARTERDECK_CONSUL_TOKEN": "s3cr3t"})
    assert config.consul.token_env == "QUARTERDECK_CONSUL_TOKEN"


def test_the_actions_section_is_read_and_checked(tmp_path):
    path = tmp_path / "quarterdeck.toml"
    path.write_text("[actions]\nrequire_approval = true\nsilence_minutes = 15\n")

    config = load_config(path)

    assert (config.actions.require_approval, config.actions.silence_minutes) == (True, 15)
    path.write_text("[actions]\nsilence_minutes = 0\n")
    with pytest.raises(ConfigError, match=r"\[actions\] silence_minutes"):
        load_config(path)
