"""The drain history read from the stored rollups: only the minutes drains.py needs, once each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app.models import BalancerRollup
from app.queries.push.inputs import MemberCount
from app.queries.push.reading import read_drain_history

NOW = datetime(2026, 12, 2, 2, 0, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def member(server: str, state: str, since: datetime | None, sessions: int = 4) -> MemberCount:
    return MemberCount("edge", "haproxy", "push", server, "push", server, state, state.upper(),
                       sessions, NOW, False, since)  # fmt: skip


def seed_hour(qd, servers: list[str], balancer: str = "edge") -> None:
    """An hour of rollups per server: minute m holds max 100 - m, last 99 - m."""
    start = NOW.replace(second=0) - 59 * MINUTE
    with qd.store.session() as db:
        db.add_all(
            BalancerRollup(
                balancer=balancer,
                backend="push",
                server=server,
                minute_at=start + m * MINUTE,
                sessions_min=99 - m,
                sessions_max=100 - m,
                sessions_last=99 - m,
            )  # fmt: skip
            for server in servers
            for m in range(60)
        )
        db.commit()


def minutes(points: list[tuple[datetime, float]]) -> list[datetime]:
    """The minute starts among a history's points (each minute gives a start and an end)."""
    return [t for t, _ in points[0:-1:2]]


def test_reads_the_recent_minutes_and_those_before_each_start_once_each(qd):
    seed_hour(qd, ["s1", "s2", "s3"])
    seed_hour(qd, ["s1"], balancer="other")
    # Two drains starting a minute apart: their windows overlap and are read as one.
    first, second = NOW - 40 * MINUTE, NOW - 39 * MINUTE
    members = [
        member("s1", "drain", first),
        member("s2", "maint", second),
        member("s3", "up", None),
    ]
    with qd.store.session() as db:
        history = read_drain_history(db, members, NOW)
    assert set(history) == {("edge", "push", "s1"), ("edge", "push", "s2")}
    recent = NOW - timedelta(minutes=7)
    for server, start in (("s1", first), ("s2", second)):
        points = history[("edge", "push", server)]
        read = minutes(points)
        assert read == sorted(set(read)), "a minute read twice"
        old = [t for t in read if t < recent]
        # The two minutes before either start (01:18:30..01:21:30), for either member.
        assert old == [datetime(2026, 12, 2, 1, m, tzinfo=UTC) for m in (19, 20, 21)]
        assert old[0] < start
        assert [t for t in read if t >= recent] == [
            t
            for t in (NOW.replace(second=0) - m * MINUTE for m in range(59, -1, -1))
            if t >= recent
        ]
        # The newest point is the member's current count, at its observation.
        assert points[-1] == (NOW, 4.0)
        # A minute's highest count stands at its start, its last one at its end (capped at now).
        at = dict(zip(points[0:-1:2], points[1:-1:2], strict=True))
        for (begin, high), (end, last) in at.items():
            assert high == last + 1 and end == min(begin + MINUTE, NOW)


def test_no_draining_member_reads_nothing(qd):
    seed_hour(qd, ["s1"])
    with qd.store.session() as db:
        assert read_drain_history(db, [member("s1", "up", None)], NOW) == {}
