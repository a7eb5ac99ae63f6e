"""`quarterdeck user list|set-role|disable|enable|passwd|delete`, against the real store."""

from __future__ import annotations

import io
import logging

import pytest
from sqlalchemy import select

from app.cli import main
from app.models import User
from tests.auth.conftest import signed_in_as

NEW_PASSWORD = "a password from the cli"


@pytest.fixture
def quarterdeck(qd, tmp_path, monkeypatch, capsys):
    """Run `quarterdeck ...` in this process against the test's store; return (code, out, err)."""
    config = tmp_path / "cli.toml"
    config.write_text(f'[store]\nurl = "{qd.store.url}"\n', encoding="utf-8")

    def run(*args: str, stdin: str = ""):
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = main(["--config", str(config), *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _user(qd, name: str) -> User | None:
    with qd.store.session() as db:
        return db.scalar(select(User).where(User.name == name))


def test_user_list_shows_names_roles_and_state(quarterdeck, make_user):
    make_user("root", "admin")
    make_user("bob", "operator")
    code, out, _ = quarterdeck("user", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "ROLE", "STATE", "LAST", "SIGN-IN"]
    assert lines[1].split() == ["bob", "operator", "enabled", "never"]
    assert lines[2].split() == ["root", "admin", "enabled", "never"]


def test_set_role_disable_enable_passwd_and_delete_from_the_command_line(
    app, qd, quarterdeck, make_user, caplog
):
    make_user("root", "admin")
    make_user("bob", "viewer")
    bob = signed_in_as(app, "bob")
    caplog.set_level(logging.INFO, logger="quarterdeck.audit")
    assert quarterdeck("user", "set-role", "bob", "operator")[:2] == (
        0,
        "user bob: role viewer -> operator\n",
    )
    assert _user(qd, "bob").role == "operator"
    code, out, _ = quarterdeck("user", "disable", "bob")
    assert code == 0 and out == "user bob disabled (1 sessions ended)\n"
    assert bob.get("/services").status_code == 302
    assert quarterdeck("user", "enable", "bob")[:2] == (0, "user bob enabled\n")
    code, out, err = quarterdeck(
        "user", "passwd", "bob", "--password-stdin", stdin=NEW_PASSWORD + "\n"
    )
    assert code == 0 and NEW_PASSWORD not in out + err
    signed_in_as(app, "bob", NEW_PASSWORD)
    assert quarterdeck("user", "delete", "bob")[:2] == (0, "user bob deleted\n")
    assert _user(qd, "bob") is None
    lines = [r.getMessage() for r in caplog.records if r.name == "quarterdeck.audit"]
    assert len(lines) == 5 and all(line.split(": ")[1].startswith("cli") for line in lines)
    assert all(NEW_PASSWORD not in line for line in lines)


def test_the_command_line_refuses_to_remove_the_last_enabled_admin(qd, quarterdeck, make_user):
    make_user("root", "admin")
    for args in (("set-role", "root", "viewer"), ("disable", "root"), ("delete", "root")):
        code, _, err = quarterdeck("user", *args)
        assert code == 1
        assert "root is the last enabled admin" in err and "Make another user an admin" in err
    user = _user(qd, "root")
    assert user.role == "admin" and not user.disabled


def test_unknown_users_and_short_passwords_are_refused_by_name(quarterdeck, make_user):
    make_user("root", "admin")
    code, _, err = quarterdeck("user", "disable", "nobody")
    assert code == 1 and "no user named “nobody”" in err
    code, _, err = quarterdeck("user", "passwd", "root", "--password-stdin", stdin="short\n")
    assert code == 1 and "password must be at least 12 characters" in err
    with pytest.raises(SystemExit):
        quarterdeck("user", "set-role", "root", "superuser")
