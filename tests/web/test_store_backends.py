"""The page and sign-in tests really run on both stores: the app's store is the one named."""

from __future__ import annotations

from sqlalchemy import text


def test_the_app_under_test_runs_on_the_store_its_parameter_names(request, app, qd, make_user):
    backend = request.node.callspec.params["app_store_url"]
    assert qd.store.url.startswith({"sqlite": "sqlite:", "postgresql": "postgresql"}[backend])
    make_user("probe", "viewer")
    with qd.store.session() as db:
        dialect = db.get_bind().dialect.name
        users = db.execute(text("select name from users")).scalars().all()
    assert dialect == backend and users == ["probe"]
    assert app.test_client().get("/login").status_code == 200
