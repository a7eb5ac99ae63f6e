"""`[[reports]]` and `[smtp]` in the config file: good entries load, bad ones name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import ConfigError, load_config


def load(tmp_path, text: str, environ=None):
    path = tmp_path / "quarterdeck.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ=environ or {})


GOOD = """
[smtp]
host = "smtp.example.com"
port = 587
starttls = true
username_env = "MAIL_USER"
password_env = "MAIL_PASSWORD"
sender = "quarterdeck@example.com"

[[reports]]
name = "handoff"
daily_at = "07:30"
period_h = 24
email_to = ["oncall@example.com", "lead@example.com"]
webhook_url = "https://hooks.example.com/quarterdeck"
webhook_secret_env = "REPORT_HOOK_KEY"
attempts = 5
retry_backoff_s = 30
top = 15
"""


def test_a_full_report_entry_and_smtp_section_load_every_key(tmp_path):
    config = load(tmp_path, GOOD)
    (report,) = config.reports
    assert report.daily_at == "07:30" and report.period_h == 24
    assert report.email_to == ("oncall@example.com", "lead@example.com")
    assert report.webhook_secret_env == "REPORT_HOOK_KEY"
    assert (report.attempts, report.retry_backoff_s, report.top) == (5, 30, 15)
    assert config.smtp.host == "smtp.example.com" and config.smtp.starttls is True
    assert config.smtp.password_env == "MAIL_PASSWORD"


def test_defaults_are_on_demand_a_day_stored_only(tmp_path):
    (report,) = load(tmp_path, '[[reports]]\nname = "handoff"\n').reports
    assert report.daily_at == "" and report.period_h == 24
    assert report.email_to == () and report.webhook_url == ""


def test_smtp_settings_take_environment_overrides_but_never_the_password_variable(tmp_path):
    config = load(
        tmp_path,
        GOOD.replace('password_env = "MAIL_PASSWORD"', ""),
        environ={"QUARTERDECK_SMTP_PORT": "2525", "QUARTERDECK_SMTP_PASSWORD": "hunter2"},
    )
    assert config.smtp.port == 2525
    # The default password variable holds a value, not an override of some key.
    assert config.smtp.password_env == "QUARTERDECK_SMTP_PASSWORD"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('daily_at = "07:30"', 'daily_at = "7.30"'), "daily_at = '7.30' must be HH:MM (UTC)"),
        (('daily_at = "07:30"', 'daily_at = "24:00"'), "must be HH:MM"),
        (("period_h = 24", "period_h = 0"), "period_h must be from 1 to 2160"),
        (('"lead@example.com"', '"lead"'), "email_to: 'lead' is not a mail address"),
        (('"lead@example.com"', '"x@y.z\\r\\nBcc: a@b.c"'), "is not a mail address"),
        (("https://hooks", "ftp://hooks"), "webhook_url = 'ftp://hooks.example.com/quarterdeck'"),
        (('webhook_secret_env = "REPORT_HOOK_KEY"', 'webhook_secret_env = ""'),
         "needs webhook_secret_env"),
        (("attempts = 5", "attempts = 0"), "attempts must be from 1 to 20"),
        (("top = 15", "top = 1000"), "top must be from 1 to 100"),
        (('name = "handoff"', 'name = "hand off/1"'), "name may hold only letters"),
        (('sender = "quarterdeck@example.com"', 'sender = "me"'), "[smtp] sender = 'me'"),
        (('host = "smtp.example.com"', 'host = ""'), "[smtp] host must be set"),
        (("port = 587", "port = 70000"), "[smtp] port must be from 1 to 65535"),
        (("top = 15", "colour = 1"), "unknown key 'colour' in [reports[0]]"),
        (("period_h = 24", 'period_h = "24"'), "period_h must be an integer"),
    ],
)  # fmt: skip
def test_a_bad_entry_is_refused_naming_the_key(tmp_path, change, message):
    old, new = change
    assert old in GOOD
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, GOOD.replace(old, new, 1))
    assert message in str(caught.value)


def test_e_mail_recipients_need_an_smtp_section(tmp_path):
    text = '[[reports]]\nname = "handoff"\nemail_to = ["oncall@example.com"]\n'
    with pytest.raises(ConfigError, match=r"email_to needs an \[smtp\] section"):
        load(tmp_path, text)


def test_two_reports_with_one_name_are_refused(tmp_path):
    text = '[[reports]]\nname = "a"\n[[reports]]\nname = "a"\n'
    with pytest.raises(ConfigError, match="name 'a' is used twice"):
        load(tmp_path, text)


DOCS = Path(__file__).resolve().parents[2] / "docs"


def _first_toml_after(text: str, heading: str) -> str:
    return text.split(heading, 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_documented_examples_load(tmp_path):
    configuration = (DOCS / "configuration.md").read_text(encoding="utf-8")
    smtp = _first_toml_after(configuration, "### `[smtp]`")
    reports = _first_toml_after(configuration, "### `[[reports]]`")
    (report,) = load(tmp_path, smtp + reports).reports
    assert report.email_to == ("oncall@example.com", "sre-leads@example.com")
    complete = _first_toml_after(configuration, "## A complete example")
    assert load(tmp_path, complete).reports[0].daily_at == "07:30"
    guide = _first_toml_after((DOCS / "reports.md").read_text(encoding="utf-8"), "## Configuration")
    assert load(tmp_path, guide).smtp.starttls is True
