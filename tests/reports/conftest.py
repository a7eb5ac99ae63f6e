"""Reports' fixtures: a period seeded with known numbers, a real SMTP server, a webhook receiver."""

from __future__ import annotations

import hashlib
import hmac
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from app.models import (
    AuditEntry,
    BalancerBackendRollup,
    BalancerRollup,
    HealthTransition,
    IdemEventRow,
    Instance,
    ProbeResultRow,
    ProbeTransition,
    Service,
    Span,
)
from tests.fixtures.processes import free_port, require_binary

# The seeded period: one day ending at END; the report's clock stands at END.
START = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
END = START + timedelta(hours=24)
LONG_AGO = START - timedelta(days=10)
XSS_SERVICE = "<script>alert('svc')</script>"
XSS_OUTPUT = "<img src=x onerror=alert('out')>"
SMTP_USER = "reporter"
SMTP_PASSWORD = "smtp-secret-do-not-leak"
WEBHOOK_SECRET = "webhook-secret-do-not-leak"


def at(hours: float = 0, minutes: float = 0) -> datetime:
    """A time inside the seeded period: START plus hours and minutes."""
    return START + timedelta(hours=hours, minutes=minutes)


def _ns(when: datetime) -> int:
    return int(when.timestamp() * 1e9)


def _service(db, name: str, instances: list[tuple[str, str]]) -> tuple[Service, list[Instance]]:
    service = Service(
        name=name,
        source="consul",
        first_seen_at=LONG_AGO,
        observed_at=END,
        changed_at=END,
        health="passing",
    )
    db.add(service)
    db.flush()
    rows = []
    for source_id, health in instances:
        row = Instance(
            service_id=service.id,
            source="consul",
            source_id=source_id,
            node="n1",
            health=health,
            observed_at=END,
            first_seen_at=LONG_AGO,
        )
        db.add(row)
        rows.append(row)
    db.flush()
    return service, rows


def _transition(db, service, instance, when, old, new, check="", output="") -> None:
    db.add(
        HealthTransition(
            service_id=service.id,
            instance_id=instance.id,
            at=when,
            from_state=old,
            to_state=new,
            check_id=check,
            output=output,
        )
    )


def seed_known_period(store) -> None:
    """Write a day of transitions, probes, audit rows, conflicts, rollups and spans.

    The numbers each test expects are written beside the rows that make them.
    """
    with store.session(write=True) as db:
        # orders: critical 02:00-02:30 (1800 s) -> 1 - 1800/86400 = 0.9791666...
        orders, (o1,) = _service(db, "orders", [("orders-1", "passing")])
        _transition(
            db,
            orders,
            o1,
            at(2),
            "passing",
            "critical",
            "service:orders-1",
            "HTTP GET /health: 503 Service Unavailable",
        )
        _transition(db, orders, o1, at(2, 30), "critical", "passing", "service:orders-1", "ok")
        # payments: one of two instances critical 05:00-06:00 -> the service is critical 3600 s.
        payments, (p1, _p2) = _service(
            db, "payments", [("payments-1", "passing"), ("payments-2", "passing")]
        )
        _transition(
            db,
            payments,
            p1,
            at(5),
            "passing",
            "critical",
            "service:payments-1",
            "charge timeout after 2000 ms",
        )
        _transition(db, payments, p1, at(6), "critical", "passing", "service:payments-1", "ok")
        # inventory: critical since before the period (23:00 the day before) until 01:00.
        inventory, (i1,) = _service(db, "inventory", [("inventory-1", "passing")])
        _transition(
            db,
            inventory,
            i1,
            START - timedelta(hours=1),
            "passing",
            "critical",
            "service:inventory-1",
            "disk full",
        )
        _transition(db, inventory, i1, at(1), "critical", "passing", "service:inventory-1", "ok")
        # push: maintenance 10:00-12:00 is not counted: 22 h observed, all of it up.
        push, (u1,) = _service(db, "push", [("push-1", "passing")])
        _transition(db, push, u1, at(10), "passing", "maintenance", "_service_maintenance:push-1")
        _transition(db, push, u1, at(12), "maintenance", "passing", "_service_maintenance:push-1")
        # gateway: critical from 23:00 on, still critical at the end (an ongoing incident).
        gateway, (g1,) = _service(db, "gateway", [("gateway-1", "critical")])
        _transition(
            db,
            gateway,
            g1,
            at(23),
            "passing",
            "critical",
            "service:gateway-1",
            "connection refused",
        )
        # A service named (and failing) like an attack: critical 60 s at 08:00.
        evil, (e1,) = _service(db, XSS_SERVICE, [("evil-1", "passing")])
        _transition(db, evil, e1, at(8), "passing", "critical", "service:evil-1", XSS_OUTPUT)
        _transition(db, evil, e1, at(8, 1), "critical", "passing", "service:evil-1", "ok")

        # Probe "checkout" of orders: 100 results, 97 passed; failing 03:00-03:10 (600 s).
        for n in range(100):
            db.add(
                ProbeResultRow(
                    name="checkout",
                    service="orders",
                    at=at(minutes=n * 10),
                    ok=n not in (18, 19, 20),
                    status=200,
                    latency_ms=12.0,
                    detail="",
                )
            )
        db.add(
            ProbeResultRow(
                name="checkout",
                service="orders",
                at=START - timedelta(hours=2),
                ok=False,
                status=500,
                latency_ms=1.0,
                detail="before",
            )
        )
        db.add(
            ProbeTransition(
                name="checkout",
                service="orders",
                at=at(3),
                from_state="passing",
                to_state="failing",
                detail="expected 200, got HTTP 502",
            )
        )
        db.add(
            ProbeTransition(
                name="checkout",
                service="orders",
                at=at(3, 10),
                from_state="failing",
                to_state="passing",
                detail="ok",
            )
        )

        # Audit: three actions in the period (two done, one failed), one the day before.
        for n, (when, status) in enumerate(
            [
                (at(2, 5), "done"),
                (at(2, 40), "done"),
                (at(5, 30), "failed"),
                (START - timedelta(hours=3), "done"),
            ]
        ):
            db.add(
                AuditEntry(
                    id=f"a{n}",
                    at=when,
                    actor="alice",
                    action="drain",
                    target=f"orders/orders-{n}",
                    reason=f"reason {n}",
                    params={},
                    plan=[],
                    steps=[],
                    blast_radius={},
                    status=status,
                )
            )

        # Conflicts: k1 5 duplicate_inflight + 2 payload_mismatch, k2 3 duplicate_completed,
        # one before the period and one malformed entry.
        events = (
            [("orders", "k1", "duplicate_inflight")] * 5
            + [("orders", "k1", "payload_mismatch")] * 2
            + [("payments", "k2", "duplicate_completed")] * 3
        )
        for n, (service, key, kind) in enumerate(events):
            db.add(
                IdemEventRow(
                    stream="s",
                    entry_id=f"{n}-0",
                    service=service,
                    key=key,
                    kind=kind,
                    at_ms=int(at(4, n).timestamp() * 1000),
                )
            )
        db.add(
            IdemEventRow(
                stream="s",
                entry_id="99-0",
                service="orders",
                key="k1",
                kind="duplicate_inflight",
                at_ms=int((START - timedelta(minutes=5)).timestamp() * 1000),
            )
        )
        db.add(
            IdemEventRow(
                stream="s",
                entry_id="98-0",
                service="",
                key="",
                kind="",
                malformed=True,
                problems="no ts_ms",
                at_ms=int(at(4).timestamp() * 1000),
            )
        )

        # Push: edge/push peaks at 250 at 04:00, edge/gw at 40 at 08:00; all together 280 at 04:00.
        for when, backend, value in [
            (at(1), "push", 100),
            (at(4), "push", 250),
            (at(8), "push", 120),
            (at(4), "gw", 30),
            (at(8), "gw", 40),
            (START - timedelta(hours=1), "push", 999),
        ]:
            db.add(
                BalancerBackendRollup(
                    balancer="edge", backend=backend, minute_at=when, sessions_last=value, servers=2
                )
            )
        # nginx counts only its whole: its busiest minute had 75 open at 06:00.
        for when, value in [(at(6), 75), (at(7), 60)]:
            db.add(
                BalancerRollup(
                    balancer="ws",
                    backend="",
                    server="",
                    minute_at=when,
                    sessions_min=value - 5,
                    sessions_max=value,
                    sessions_last=value - 1,
                )
            )

        # Spans: orders "GET /checkout" 1..20 ms (mean 10.5, p95 19, max 20, one error);
        # payments "charge" 5 ms x 4 (mean 5).
        for n in range(1, 21):
            db.add(
                Span(
                    trace_id=f"{n:032x}",
                    span_id=f"{n:016x}",
                    service="orders",
                    name="GET /checkout",
                    start_ns=_ns(at(9, n)),
                    duration_ns=n * 1_000_000,
                    status_code=2 if n == 3 else 0,
                    received_ns=_ns(at(9, n)),
                )
            )
        for n in range(4):
            db.add(
                Span(
                    trace_id=f"{100 + n:032x}",
                    span_id=f"{100 + n:016x}",
                    service="payments",
                    name="charge",
                    start_ns=_ns(at(9, n)),
                    duration_ns=5_000_000,
                    received_ns=_ns(at(9, n)),
                )
            )


# -- a real SMTP server (aiosmtpd), with STARTTLS and sign-in ---------------------------------


@dataclass
class Mailbox:
    """What the SMTP server received, and how each session signed in."""

    messages: list = field(default_factory=list)
    logins: list = field(default_factory=list)
    tls: list = field(default_factory=list)


class MailHandler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.box.messages.append(envelope)
        self.box.tls.append(session.ssl is not None)
        return "250 OK"


@dataclass
class SmtpServer:
    host: str
    port: int
    ca_file: str
    box: Mailbox


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command) and its key."""
    openssl = require_binary("openssl", "openssl")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def smtp_server(tls_files) -> Iterator[SmtpServer]:
    """aiosmtpd on a free loopback port: STARTTLS required, then AUTH with SMTP_USER/PASSWORD."""
    cert, key = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    box = Mailbox()

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == SMTP_USER.encode()
            and auth_data.password == SMTP_PASSWORD.encode()
        )
        box.logins.append((mechanism, auth_data.login.decode() if ok else "refused"))
        return AuthResult(success=ok)

    port = free_port()
    controller = Controller(
        MailHandler(box),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
    )
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, str(cert), box)
    finally:
        controller.stop()


# -- a webhook receiver that checks the signature -----------------------------------------------


@dataclass
class Receiver:
    url: str
    # Statuses to answer, in order; once used up, 200 to a valid signature (else 401).
    script: list[int] = field(default_factory=list)
    received: list[dict] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)


def verify(secret: str, headers, body: bytes) -> bool:
    """Check the signature the way a receiver would (docs/reports.md)."""
    timestamp = headers.get("X-Quarterdeck-Timestamp", "")
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    given = headers.get("X-Quarterdeck-Signature", "")
    return hmac.compare_digest(given, "sha256=" + expected.hexdigest())


@pytest.fixture
def webhook_receiver() -> Iterator[Receiver]:
    """A real HTTP server on loopback that verifies each POST's HMAC before accepting it."""
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802 (http.server's name)
            receiver = holder[0]
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            good = verify(WEBHOOK_SECRET, self.headers, body)
            receiver.verdicts.append("valid" if good else "invalid")
            status = receiver.script.pop(0) if receiver.script else 200 if good else 401
            if status == 200:
                receiver.received.append(json.loads(body))
            answer = b"accepted" if status == 200 else b"no thanks"
            self.send_response(status)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    holder.append(Receiver(f"http://127.0.0.1:{server.server_address[1]}/hooks/quarterdeck"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
