"""The postgres_server fixture provides real PostgreSQL databases, fresh for each caller."""

import psycopg
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def test_created_database_is_empty_and_reachable_with_psycopg(postgres_server):
    url = postgres_server.create_database()
    conninfo = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    with psycopg.connect(conninfo) as connection:
        version = connection.execute("select version()").fetchone()[0]
        tables = connection.execute("select count(*) from pg_tables where schemaname = 'public'")
        table_count = tables.fetchone()[0]

    assert url.startswith("postgresql+psycopg://")
    assert version.startswith("PostgreSQL ")
    assert table_count == 0


def test_each_postgres_url_is_a_different_database(postgres_server, postgres_url):
    engine = create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            current = connection.execute(text("select current_database()")).scalar_one()
    finally:
        engine.dispose()

    assert current == make_url(postgres_url).database
    assert postgres_server.create_database() != postgres_url
