"""Write many rows with the driver's executemany, converting values once per column.

SQLAlchemy's executemany spends more time building parameters than the database spends
writing them; for fleet-sized batches we render the statement once and feed the driver
tuples converted by each column type's own bind processor.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table
from sqlalchemy.engine import Connection


def _placeholder(connection: Connection) -> str:
    return "?" if connection.dialect.paramstyle == "qmark" else "%s"


def _converted(connection: Connection, table: Table, columns: dict[str, list]) -> list[tuple]:
    """Convert column values to driver tuples; a value shared by many rows converts once."""
    dialect = connection.dialect
    converted = []
    for name, values in columns.items():
        proc = table.c[name].type._cached_bind_processor(dialect)
        if proc is not None:
            try:
                # Hashable values (timestamps, strings) often repeat: convert each once.
                unique = {value: proc(value) for value in set(values)}
                values = [unique[value] for value in values]
            except TypeError:  # JSON lists and dicts
                values = list(map(proc, values))
        converted.append(values)
    return list(zip(*converted, strict=True))


def _quote(connection: Connection, name: str) -> str:
    return connection.dialect.identifier_preparer.quote(name)


def insert_columns(connection: Connection, table: Table, columns: dict[str, list]) -> None:
    """Insert rows given column by column (every list as long as the others)."""
    if not columns or not next(iter(columns.values())):
        return
    mark = _placeholder(connection)
    names = ", ".join(_quote(connection, c) for c in columns)
    marks = ", ".join([mark] * len(columns))
    # Names come from the models, never from input; values are bound.
    sql = f"INSERT INTO {_quote(connection, table.name)} ({names}) VALUES ({marks})"  # noqa: S608
    connection.exec_driver_sql(sql, _converted(connection, table, columns))


def insert_rows(connection: Connection, table: Table, rows: Sequence[dict]) -> None:
    """Insert dict rows that all have the same keys."""
    if rows:
        insert_columns(connection, table, {c: [row[c] for row in rows] for c in rows[0]})


def update_rows(connection: Connection, table: Table, rows: Sequence[dict]) -> None:
    """Update rows by primary key `_id`; every row sets the same columns."""
    if not rows:
        return
    columns = {c: [row[c] for row in rows] for c in rows[0] if c != "_id"}
    mark = _placeholder(connection)
    sets = ", ".join(f"{_quote(connection, c)} = {mark}" for c in columns)
    sql = f"UPDATE {_quote(connection, table.name)} SET {sets} WHERE id = {mark}"  # noqa: S608
    values = _converted(connection, table, columns)
    params = [(*v, row["_id"]) for v, row in zip(values, rows, strict=True)]
    connection.exec_driver_sql(sql, params)


def insert_columns_keyed(
    connection: Connection,
    table: Table,
    columns: dict[str, list],
    key_column: str,
    parent: Table,
    parent_keys: dict[str, list],
) -> None:
    """Insert rows whose `key_column` is the id of the `parent` row matching `parent_keys`.

    The database looks each parent id up itself (INSERT ... SELECT on the parent's unique key),
    so new parent rows need not be read back first.
    """
    if not columns or not next(iter(columns.values())):
        return
    mark = _placeholder(connection)
    names = ", ".join(_quote(connection, c) for c in (key_column, *columns))
    values = ", ".join([mark] * len(columns))
    where = " AND ".join(f"{_quote(connection, c)} = {mark}" for c in parent_keys)
    sql = (
        f"INSERT INTO {_quote(connection, table.name)} ({names}) "  # noqa: S608
        f"SELECT id, {values} FROM {_quote(connection, parent.name)} WHERE {where}"
    )
    own = _converted(connection, table, columns)
    keys = _converted(connection, parent, parent_keys)
    connection.exec_driver_sql(sql, [a + b for a, b in zip(own, keys, strict=True)])


def insert_columns_skipping(
    connection: Connection, table: Table, columns: dict[str, list], unique: Sequence[str]
) -> int:
    """Insert rows given column by column, skipping those whose `unique` columns exist.

    Both SQLite (3.24+) and PostgreSQL take `ON CONFLICT (...) DO NOTHING`; returns how many
    rows went in.
    """
    if not columns or not next(iter(columns.values())):
        return 0
    mark = _placeholder(connection)
    names = ", ".join(_quote(connection, c) for c in columns)
    marks = ", ".join([mark] * len(columns))
    keys = ", ".join(_quote(connection, c) for c in unique)
    sql = (
        f"INSERT INTO {_quote(connection, table.name)} ({names}) VALUES ({marks}) "  # noqa: S608
        f"ON CONFLICT ({keys}) DO NOTHING"
    )
    result = connection.exec_driver_sql(sql, _converted(connection, table, columns))
    return max(result.rowcount, 0)


def bound_value(connection: Connection, table: Table, column: str, value):
    """Return `value` as the driver takes it for `column` (its type's bind processor applied)."""
    proc = table.c[column].type._cached_bind_processor(connection.dialect)
    return value if proc is None else proc(value)


def insert_tuples_skipping(
    connection: Connection,
    table: Table,
    names: Sequence[str],
    rows: Sequence[tuple],
    unique: Sequence[str],
) -> int:
    """Insert rows given as tuples of driver values in the order of `names`, skipping those
    whose `unique` columns exist; return how many went in.

    For wide, fast batches (a stream's entries): no per-column lists, no conversion here. The
    caller converts what needs it once (`bound_value`), e.g. a Boolean column's two values.
    """
    if not rows:
        return 0
    mark = _placeholder(connection)
    columns = ", ".join(_quote(connection, c) for c in names)
    marks = ", ".join([mark] * len(names))
    keys = ", ".join(_quote(connection, c) for c in unique)
    sql = (
        f"INSERT INTO {_quote(connection, table.name)} ({columns}) VALUES ({marks}) "  # noqa: S608
        f"ON CONFLICT ({keys}) DO NOTHING"
    )
    result = connection.exec_driver_sql(sql, rows)
    return max(result.rowcount, 0)
