"""Reports go out by e-mail through a real SMTP server (STARTTLS, sign-in) and to a webhook
that checks their HMAC signature; a failed delivery is retried with backoff and shown."""

from __future__ import annotations

import email
import email.policy
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.config import ReportConfig, SmtpConfig
from app.factory import create_app
from app.models import ReportDelivery, ReportRow
from app.reports.running import deliver_due, run_now
from tests.conftest import sign_in
from tests.reports.conftest import (
    END,
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    seed_known_period,
)

SECRET_ENV = "QD_TEST_REPORT_WEBHOOK_SECRET"


@pytest.fixture
def secrets_in_env(monkeypatch):
    monkeypatch.setenv("QUARTERDECK_SMTP_USERNAME", SMTP_USER)
    monkeypatch.setenv("QUARTERDECK_SMTP_PASSWORD", SMTP_PASSWORD)
    monkeypatch.setenv(SECRET_ENV, WEBHOOK_SECRET)


def configure(qd, *, smtp=None, **report):
    """Give the context one report named handoff (and [smtp]), its clock at END."""
    now = [END]
    qd.clock = lambda: now[0]
    settings = {"attempts": 3, "retry_backoff_s": 60, "webhook_secret_env": SECRET_ENV, **report}
    qd.config = qd.config.replace(smtp=smtp, reports=(ReportConfig(name="handoff", **settings),))
    return now


def smtp_config(server, **changes) -> SmtpConfig:
    values = {"host": server.host, "port": server.port, "starttls": True,
              "ca_file": server.ca_file, "sender": "qd@example.test", "timeout_s": 5}  # fmt: skip
    return SmtpConfig(**{**values, **changes})


def deliveries(qd, report_id) -> dict[str, ReportDelivery]:
    with qd.store.session() as db:
        rows = db.scalars(select(ReportDelivery).where(ReportDelivery.report_id == report_id))
        return {d.via: d for d in rows}


def stored_text(qd) -> str:
    """Everything the store holds about reports, as one string (to look for secrets in)."""
    with qd.store.session() as db:
        parts = []
        for r in db.scalars(select(ReportRow)):
            parts += [r.html, r.csv, str(r.figures)]
        for d in db.scalars(select(ReportDelivery)):
            parts += [d.destination, d.detail, str(d.history)]
        return "\n".join(parts)


def test_the_report_is_mailed_over_starttls_with_the_credentials_from_the_environment(
    qd, smtp_server, secrets_in_env, caplog
):
    caplog.set_level(logging.DEBUG)
    seed_known_period(qd.store)
    configure(
        qd, smtp=smtp_config(smtp_server), email_to=("oncall@example.test", "lead@example.test")
    )
    report_id = run_now(qd, "handoff")
    sent = deliveries(qd, report_id)["email"]
    assert sent.state == "ok" and sent.attempts == 1, sent.detail
    assert "oncall@example.test" in sent.detail
    box = smtp_server.box
    assert len(box.messages) == 1 and box.tls == [True]
    assert box.logins == [("PLAIN", SMTP_USER)] or box.logins == [("LOGIN", SMTP_USER)]
    envelope = box.messages[0]
    assert sorted(envelope.rcpt_tos) == ["lead@example.test", "oncall@example.test"]
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    assert message["Subject"] == "Handoff report handoff · 2026-12-01 00:00 UTC"
    assert message["From"] == "qd@example.test"
    html = message.get_body(("html",)).get_content()
    assert "97.917%" in html and "HTTP GET /health: 503 Service Unavailable" in html
    text = message.get_body(("plain",)).get_content()
    assert "Incidents: 6 (1 ongoing)" in text
    attachments = list(message.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["handoff-20261201T0000Z.csv"]
    assert "availability,orders,0.979167" in attachments[0].get_content()
    # The password was used, never kept or logged.
    assert SMTP_PASSWORD not in stored_text(qd)
    assert SMTP_PASSWORD not in caplog.text and WEBHOOK_SECRET not in caplog.text


def test_a_server_certificate_nobody_vouches_for_fails_the_delivery_and_it_waits_to_retry(
    qd, smtp_server, secrets_in_env
):
    # No ca_file: the system's CAs do not know the test server's self-signed certificate.
    configure(qd, smtp=smtp_config(smtp_server, ca_file=""), email_to=("oncall@example.test",))
    report_id = run_now(qd, "handoff")
    failed = deliveries(qd, report_id)["email"]
    assert failed.state == "pending" and failed.attempts == 1
    assert "CERTIFICATE_VERIFY_FAILED" in failed.detail or "certificate" in failed.detail
    assert failed.next_attempt_at == END + timedelta(seconds=60)
    assert smtp_server.box.messages == []


def test_a_server_that_wants_starttls_refuses_a_client_that_does_not_use_it(
    qd, smtp_server, secrets_in_env
):
    configure(qd, smtp=smtp_config(smtp_server, starttls=False), email_to=("a@example.test",))
    report_id = run_now(qd, "handoff")
    failed = deliveries(qd, report_id)["email"]
    assert failed.state == "pending"
    # Before STARTTLS the server offers no sign-in: the credentials never go out in clear.
    assert "AUTH extension not supported" in failed.detail
    assert smtp_server.box.messages == []


def test_the_webhook_gets_the_figures_signed_with_hmac_sha256(qd, webhook_receiver, secrets_in_env):
    seed_known_period(qd.store)
    configure(qd, webhook_url=webhook_receiver.url)
    report_id = run_now(qd, "handoff")
    assert deliveries(qd, report_id)["webhook"].state == "ok"
    assert webhook_receiver.verdicts == ["valid"]
    (payload,) = webhook_receiver.received
    assert payload["id"] == report_id and payload["name"] == "handoff"
    assert payload["period"] == {
        "start_at": "2026-11-30T00:00:00Z",
        "end_at": "2026-12-01T00:00:00Z",
    }
    assert payload["figures"]["summary"]["incidents"] == 6
    assert payload["figures"]["conflicts"]["total"] == 10
    assert WEBHOOK_SECRET not in stored_text(qd)


def test_a_failing_webhook_is_retried_after_its_backoff_and_the_page_shows_each_attempt(
    qd, webhook_receiver, secrets_in_env, make_user
):
    now = configure(qd, webhook_url=webhook_receiver.url)
    webhook_receiver.script = [500]
    report_id = run_now(qd, "handoff")
    first = deliveries(qd, report_id)["webhook"]
    assert first.state == "pending" and first.attempts == 1
    assert first.detail == "webhook answered HTTP 500: no thanks"
    assert first.next_attempt_at == END + timedelta(seconds=60)

    client = create_app(qd=qd).test_client()
    sign_in(client, make_user("vera", "viewer"))
    page = client.get(f"/reports/{report_id}").get_data(as_text=True)
    assert 'data-report-status="retrying"' in page
    assert "webhook answered HTTP 500: no thanks" in page and "1 of 3" in page

    now[0] = END + timedelta(seconds=59)
    assert deliver_due(qd) == {"sent": 0, "failed": 0, "retrying": 0}  # not due yet
    now[0] = END + timedelta(seconds=61)
    assert deliver_due(qd) == {"sent": 1, "failed": 0, "retrying": 0}
    second = deliveries(qd, report_id)["webhook"]
    assert second.state == "ok" and second.attempts == 2
    assert [h["ok"] for h in second.history] == [False, True]
    assert webhook_receiver.verdicts == ["valid", "valid"]

    page = client.get(f"/reports/{report_id}").get_data(as_text=True)
    assert 'data-report-status="delivered"' in page and "2 of 3" in page
    assert "every attempt" in page and "webhook answered HTTP 500" in page
    body = client.get(f"/api/v1/reports/{report_id}").get_json()
    (delivery,) = body["delivery"]
    assert delivery["via"] == "webhook" and delivery["ok"] is True and delivery["attempts"] == 2
    assert body["status"] == "delivered"


def test_a_webhook_that_never_accepts_fails_after_its_attempts_with_doubling_waits(
    qd, webhook_receiver, secrets_in_env, monkeypatch, make_user
):
    now = configure(qd, webhook_url=webhook_receiver.url)
    monkeypatch.setenv(SECRET_ENV, "not-the-receivers-key")
    report_id = run_now(qd, "handoff")
    assert deliveries(qd, report_id)["webhook"].next_attempt_at == END + timedelta(seconds=60)
    now[0] = END + timedelta(seconds=60)
    assert deliver_due(qd)["retrying"] == 1
    # The second wait is twice the first.
    second = deliveries(qd, report_id)["webhook"]
    assert second.next_attempt_at == now[0] + timedelta(seconds=120)
    now[0] += timedelta(seconds=120)
    assert deliver_due(qd)["failed"] == 1
    final = deliveries(qd, report_id)["webhook"]
    assert final.state == "failed" and final.attempts == 3 and final.next_attempt_at is None
    assert final.detail == "webhook answered HTTP 401: no thanks"
    assert webhook_receiver.verdicts == ["invalid"] * 3
    now[0] += timedelta(days=1)
    assert deliver_due(qd) == {"sent": 0, "failed": 0, "retrying": 0}  # no attempt left

    client = create_app(qd=qd).test_client()
    sign_in(client, make_user("vera", "viewer"))
    listing = client.get("/reports").get_data(as_text=True)
    assert 'data-report-status="failed"' in listing and "after 3 attempts" in listing
    assert client.get("/api/v1/reports").get_json()["reports"][0]["status"] == "failed"


def test_a_webhook_without_its_key_in_the_environment_is_not_sent(qd, webhook_receiver):
    configure(qd, webhook_url=webhook_receiver.url)  # SECRET_ENV is not set
    report_id = run_now(qd, "handoff")
    delivery = deliveries(qd, report_id)["webhook"]
    assert delivery.state == "pending"
    assert delivery.detail == f"the variable {SECRET_ENV} holding the webhook key is not set"
    assert webhook_receiver.verdicts == []


def test_two_processes_that_both_see_a_delivery_due_send_it_once(
    qd, make_qd, webhook_receiver, secrets_in_env
):
    configure(qd, webhook_url=webhook_receiver.url)
    webhook_receiver.script = [500]
    report_id = run_now(qd, "handoff")
    other = make_qd()
    other.config, other.clock = qd.config, lambda: END + timedelta(seconds=61)
    qd.clock = other.clock
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(deliver_due, [qd, other]))
    assert sorted(r["sent"] for r in results) == [0, 1]
    assert webhook_receiver.verdicts == ["valid", "valid"]  # the first try and one retry
    assert deliveries(qd, report_id)["webhook"].attempts == 2


def test_a_plain_local_relay_takes_the_mail_without_tls_or_sign_in(qd):
    from aiosmtpd.controller import Controller

    from tests.fixtures.processes import free_port
    from tests.reports.conftest import Mailbox, MailHandler

    box = Mailbox()
    relay = Controller(MailHandler(box), hostname="127.0.0.1", port=free_port())
    relay.start()
    try:
        smtp = SmtpConfig(
            host="127.0.0.1", port=relay.port, starttls=False, sender="qd@example.test"
        )
        configure(qd, smtp=smtp, email_to=("oncall@example.test",))
        report_id = run_now(qd, "handoff")  # no QUARTERDECK_SMTP_USERNAME: no AUTH
    finally:
        relay.stop()
    assert deliveries(qd, report_id)["email"].state == "ok"
    assert box.tls == [False] and box.logins == []
