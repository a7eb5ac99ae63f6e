"""Writing catalog updates: health rollup, transitions only on change, gone not deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from app.models import HealthTransition, Instance, Service, ServiceUpstream
from app.store import Store
from app.store.catalog import apply_catalog_update, instance_health, rollup
from collectors.base import CatalogUpdate, CheckRecord, InstanceRecord, ServiceRecord

T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def check(status: str, check_id: str = "http", output: str = "", kind: str = "service"):
    return CheckRecord(check_id=check_id, name=check_id, status=status, output=output, kind=kind)


def instance(iid: str, *checks: CheckRecord, node: str = "n1", version: str | None = "v1"):
    return InstanceRecord(
        id=iid, node=node, address="10.0.0.1", port=80, version=version, checks=checks
    )


def update(at: datetime, *services: ServiceRecord, complete: bool = True, removed=()):
    return CatalogUpdate(
        observed_at=at, services=services, complete=complete, removed=tuple(removed)
    )


def write(store: Store, upd: CatalogUpdate):
    with store.session() as db:
        return apply_catalog_update(db, "consul", upd)


def test_instance_health_is_the_worst_check_and_maintenance_is_its_own_state():
    assert instance_health([check("passing"), check("warning", "b")])[0] == "warning"
    assert instance_health([check("warning"), check("critical", "b", "boom")]) == (
        "critical",
        "boom",
    )
    maint = CheckRecord(
        "_service_maintenance:a", "m", "critical", notes="deploy", kind="maintenance"
    )
    assert instance_health([check("critical"), maint]) == ("maintenance", "deploy")
    assert instance_health([], checked=True)[0] == "unknown"


def test_rollup_counts_maintenance_only_as_maintenance():
    health, counts = rollup(["passing", "maintenance", "critical"])
    assert health == "critical"
    assert counts == {"total": 3, "passing": 1, "warning": 0, "critical": 1, "maintenance": 1}
    assert rollup(["maintenance", "maintenance"])[0] == "maintenance"
    assert rollup(["passing", "maintenance"])[0] == "passing"


def test_a_transition_is_stored_only_when_the_state_changes(store_url):
    store = Store(store_url)
    try:
        svc = lambda status, out="": ServiceRecord(  # noqa: E731
            "orders", tags=("web",), instances=(instance("orders-1", check(status, output=out)),)
        )
        write(store, update(T0, svc("passing")))
        write(store, update(T0 + timedelta(seconds=10), svc("passing")))
        changes = write(store, update(T0 + timedelta(seconds=20), svc("critical", "HTTP 503")))
        write(store, update(T0 + timedelta(seconds=30), svc("critical", "HTTP 503 again")))
        assert changes.transitions == 1 and "orders" in changes.changed_services
        with store.session() as db:
            rows = db.scalars(select(HealthTransition).order_by(HealthTransition.at)).all()
            assert [(r.from_state, r.to_state, r.output) for r in rows] == [
                ("passing", "critical", "HTTP 503")
            ]
            assert rows[0].at == T0 + timedelta(seconds=20)
            service = db.scalar(select(Service).where(Service.name == "orders"))
            assert (service.health, service.n_critical, service.n_total) == ("critical", 1, 1)
    finally:
        store.dispose()


def test_a_service_that_leaves_the_catalog_is_marked_gone_not_deleted(store_url):
    store = Store(store_url)
    try:
        a = ServiceRecord("a", instances=(instance("a-1", check("passing")),))
        b = ServiceRecord("b", instances=(instance("b-1", check("passing")),), upstreams=("a",))
        write(store, update(T0, a, b))
        write(store, update(T0 + timedelta(minutes=1), a))
        with store.session() as db:
            gone = db.scalar(select(Service).where(Service.name == "b"))
            assert gone.gone_at == T0 + timedelta(minutes=1)
            inst = db.scalar(select(Instance).where(Instance.source_id == "b-1"))
            assert inst.gone_at is not None and inst.health == "gone"
            last = db.scalars(
                select(HealthTransition).where(HealthTransition.instance_id == inst.id)
            ).all()
            assert [(t.from_state, t.to_state) for t in last] == [("passing", "gone")]
        # It comes back: not gone any more, and the return is a transition too.
        write(store, update(T0 + timedelta(minutes=2), a, b))
        with store.session() as db:
            back = db.scalar(select(Service).where(Service.name == "b"))
            assert back.gone_at is None and back.health == "passing"
            assert db.scalar(select(func.count()).select_from(ServiceUpstream)) == 1
    finally:
        store.dispose()


def test_a_partial_update_touches_only_the_named_services(store_url):
    store = Store(store_url)
    try:
        a = ServiceRecord("a", instances=(instance("a-1", check("passing")),))
        b = ServiceRecord("b", instances=(instance("b-1", check("passing")),))
        write(store, update(T0, a, b))
        a_bad = ServiceRecord("a", instances=(instance("a-1", check("warning")),))
        write(store, update(T0 + timedelta(seconds=5), a_bad, complete=False))
        with store.session() as db:
            states = dict(db.execute(select(Service.name, Service.health)).all())
            assert states == {"a": "warning", "b": "passing"}
        write(store, update(T0 + timedelta(seconds=9), complete=False, removed=["b"]))
        with store.session() as db:
            assert db.scalar(select(Service.gone_at).where(Service.name == "b")) is not None
    finally:
        store.dispose()


def test_an_instance_leaving_a_service_is_gone_and_leaves_the_counts(store_url):
    store = Store(store_url)
    try:
        two = ServiceRecord(
            "c", instances=(instance("c-1", check("passing")), instance("c-2", check("critical")))
        )
        one = ServiceRecord("c", instances=(instance("c-1", check("passing")),))
        write(store, update(T0, two))
        write(store, update(T0 + timedelta(seconds=5), one))
        with store.session() as db:
            service = db.scalar(select(Service).where(Service.name == "c"))
            assert (service.health, service.n_total, service.n_critical) == ("passing", 1, 0)
    finally:
        store.dispose()


def test_the_same_instance_id_on_two_nodes_is_two_instances(store_url):
    store = Store(store_url)
    try:
        svc = ServiceRecord(
            "web",
            instances=(
                instance("web", check("passing"), node="n1"),
                instance("web", check("critical"), node="n2"),
            ),
        )
        write(store, update(T0, svc))
        with store.session() as db:
            assert db.scalar(select(func.count()).select_from(Instance)) == 2
            assert db.scalar(select(Service.health).where(Service.name == "web")) == "critical"
    finally:
        store.dispose()


def test_a_recovery_names_the_check_that_recovered_not_the_first_passing_one(store_url):
    store = Store(store_url)
    try:
        serf = check("passing", "serfHealth", "Agent alive and reachable", kind="node")

        def svc(status: str, out: str) -> ServiceRecord:
            return ServiceRecord(
                "api", instances=(instance("api-1", serf, check(status, "http", out)),)
            )

        write(store, update(T0, svc("critical", "HTTP 503")))
        write(store, update(T0 + timedelta(seconds=5), svc("passing", "HTTP 200 OK")))
        with store.session() as db:
            last = db.scalars(select(HealthTransition).order_by(HealthTransition.at.desc())).first()
            assert (last.from_state, last.to_state) == ("critical", "passing")
            assert (last.check_id, last.output) == ("http", "HTTP 200 OK")
    finally:
        store.dispose()


def test_instances_remember_when_they_were_first_seen(store_url):
    store = Store(store_url)
    try:
        one = ServiceRecord("web", instances=(instance("web-1", check("passing")),))
        two = ServiceRecord(
            "web",
            instances=(instance("web-1", check("passing")), instance("web-2", check("passing"))),
        )
        write(store, update(T0, one))
        write(store, update(T0 + timedelta(hours=2), two))
        with store.session() as db:
            seen = dict(db.execute(select(Instance.source_id, Instance.first_seen_at)).all())
        assert seen == {"web-1": T0, "web-2": T0 + timedelta(hours=2)}
    finally:
        store.dispose()
