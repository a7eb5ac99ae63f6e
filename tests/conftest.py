"""Shared fixtures: a fresh migrated store per test, the app, signed-in clients, a live server."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.auth.accounts import create_token, create_user
from app.config import Config, ServerConfig, StoreConfig
from app.context import Quarterdeck
from app.factory import create_app
from app.serving import Server
from app.store import migrate

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.haproxy",
    "tests.fixtures.nginx",
    "tests.fixtures.postgres",
    "tests.fixtures.browser",
    "tests.fixtures.websocket",
]

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def _no_ambient_config(monkeypatch):
    """Keep the developer's own environment out of the tests."""
    for name in ("QUARTERDECK_CONFIG", "CONSUL_HTTP_TOKEN", "CONSUL_HTTP_ADDR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("QUARTERDECK_SECRET_KEY", "test-secret-key-not-for-production")


@pytest.fixture(scope="session")
def _migrated_sqlite_template(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path, _migrated_sqlite_template) -> str:
    """A fresh SQLite store at the newest schema."""
    path = tmp_path / "quarterdeck.db"
    shutil.copy(_migrated_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """A fresh store at the newest schema, once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    url = request.getfixturevalue("postgres_server").create_database()
    migrate.upgrade(url)
    return url


# Test directories whose app, contexts and users run once on SQLite and once on PostgreSQL
# (`app_store_url`). The store tests pick their backends themselves (`store_url`).
BOTH_STORES = (
    "auth",
    "web",
    "balancers",
    "push",
    "idempotency",
    "actions",
    "probes",
    "reports",
    "slo",
    "releases",
)
TESTS_DIR = Path(__file__).resolve().parent


def pytest_generate_tests(metafunc):
    """Run the tests under BOTH_STORES on both stores, the others on SQLite only.

    A module under BOTH_STORES marked `sqlite_only` runs on SQLite alone: its docstring names
    the tests that cover its store side on both stores.
    """
    if "app_store_url" not in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("sqlite_only"):
        return
    relative = Path(metafunc.definition.path).resolve().relative_to(TESTS_DIR)
    if relative.parts[0] in BOTH_STORES:
        metafunc.parametrize("app_store_url", ["sqlite", "postgresql"], indirect=True)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Group the tests for pytest-xdist's `--dist loadgroup` (scripts/test.sh runs workers).

    Each module runs whole on one worker, so its module-scoped servers start once; every test
    of the real demo fleet (tests/demo) runs on one worker, so one fleet serves them all. A
    module marked `spread` (long tests, nothing module-scoped) gives each test its own group.
    """
    for item in items:
        relative = Path(item.path).resolve().relative_to(TESTS_DIR)
        group = "demo" if relative.parts[0] == "demo" else relative.as_posix()
        if item.get_closest_marker("spread"):
            group = item.nodeid
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def app_store_url(request) -> Iterator[str]:
    """The store of the test's Quarterdeck context: a fresh copy of a migrated database."""
    if getattr(request, "param", "sqlite") == "sqlite":
        yield request.getfixturevalue("sqlite_url")
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create_database(template=server.migrated_template())
    yield url
    server.drop_database(url)


def test_config(store_url: str, **sections) -> Config:
    """A config for tests: the given store, insecure cookies for the test client."""
    server = ServerConfig(cookie_secure=False, bind="127.0.0.1:0")
    return Config(store=StoreConfig(url=store_url), server=server).replace(**sections)


test_config.__test__ = False  # a helper, not a test


@pytest.fixture
def make_qd(app_store_url) -> Iterator[Callable[..., Quarterdeck]]:
    """Return a factory of Quarterdeck contexts on the fresh store (sections as keywords)."""
    made: list[Quarterdeck] = []

    def factory(url: str | None = None, **sections) -> Quarterdeck:
        qd = Quarterdeck.from_config(test_config(url or app_store_url, **sections))
        made.append(qd)
        return qd

    yield factory
    for qd in made:
        qd.feed.close()
        qd.store.dispose()


@pytest.fixture
def qd(make_qd) -> Quarterdeck:
    """A Quarterdeck context on a fresh store (SQLite; PostgreSQL too under BOTH_STORES)."""
    return make_qd()


@pytest.fixture
def app(qd):
    """The Flask app on a fresh store."""
    return create_app(qd=qd)


@pytest.fixture
def make_user(qd) -> Callable[..., str]:
    """Return a factory that creates a user with a role and returns its name."""

    def factory(name: str = "alice", role: str = "viewer", password: str = PASSWORD) -> str:
        with qd.store.session() as db:
            create_user(db, name, role, password)
        return name

    return factory


@pytest.fixture
def make_token(qd) -> Callable[..., str]:
    """Return a factory that creates an API token with a role and returns it."""

    def factory(name: str = "ci", role: str = "viewer") -> str:
        with qd.store.session() as db:
            return create_token(db, name, role)

    return factory


CSRF_RE = re.compile(r'name="csrf_token"[^>]*value="([^"]+)"')


def csrf_token_from(html: str) -> str:
    """Pull the CSRF token out of a rendered form."""
    match = CSRF_RE.search(html)
    assert match, "the page has no csrf_token field"
    return match.group(1)


def sign_in(client, name: str, password: str = PASSWORD):
    """Sign a test client in through the real form; return the POST response."""
    page = client.get("/login")
    token = csrf_token_from(page.get_data(as_text=True))
    return client.post("/login", data={"username": name, "password": password, "csrf_token": token})


@pytest.fixture
def signed_in(app, make_user) -> Callable[[str], object]:
    """Return a factory of test clients signed in with a given role."""

    def factory(role: str = "viewer"):
        name = make_user(f"user-{role}", role)
        client = app.test_client()
        response = sign_in(client, name)
        assert response.status_code == 302, response.get_data(as_text=True)
        return client

    return factory


class LiveServer:
    """The real app on the real server (`quarterdeck serve`'s), on a free loopback port."""

    def __init__(self, app, threads: int = 16) -> None:
        self.app = app
        self.server = Server(app, "127.0.0.1", 0, threads=threads)
        self.port = self.server.port
        self.url = self.server.url

    def start(self) -> LiveServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def live_server(app, qd) -> Iterator[LiveServer]:
    """Serve the app over real HTTP for browser and streaming tests."""
    server = LiveServer(app, threads=qd.config.server.threads).start()
    yield server
    qd.feed.close()
    server.stop()
