"""The Overview's first card says what is going on, worst first, in words with links."""

from __future__ import annotations

import re

from app.models import IdemEventRow
from tests.web.test_overview_and_sources_wording import pages, signed_in_client  # noqa: F401
from tests.web.test_service_pages import NOW, T0, check, element, html_of, instance, service, write


def now_card(client) -> str:
    return element(html_of(client, "/"), "section", 'id="now"')


def lines(card: str) -> dict[str, str]:
    found = re.findall(r'<li class="now__line [^"]*" data-now="([\w-]+)">(.*?)</li>', card, re.S)
    return {kind: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", text)).strip() for kind, text in found}


def test_a_quiet_fleet_says_all_quiet(pages):  # noqa: F811
    qd, client = pages
    write(qd, T0, service("ledger", instance("l-1", check("passing"))))

    said = lines(now_card(client))

    assert list(said) == ["quiet"]
    assert said["quiet"].startswith("All quiet: every service passing")


def test_critical_then_warning_services_are_named_with_their_instance_counts(pages):  # noqa: F811
    qd, client = pages
    write(
        qd,
        T0,
        *(
            service(
                f"svc-{n}",
                instance(f"s{n}-1", check("critical")),
                instance(f"s{n}-2", check("passing")),
            )
            for n in range(5)
        ),  # fmt: skip
        service("payments", instance("p-1", check("warning"))),
        service("ledger", instance("l-1", check("passing"))),
    )

    card = now_card(client)
    said = lines(card)

    assert list(said)[:2] == ["critical", "warning"]
    assert said["critical"] == (
        "critical: svc-0 (1 of 2 instances), svc-1 (1 of 2 instances), svc-2 (1 of 2 instances)"
        " and 2 more services are critical."
    )
    assert said["warning"] == "warning: payments (1 of 1 instance) is warning."
    assert 'href="/services/payments"' in card
    # The severity is said in words (for screen readers), not by colour alone.
    assert '<span class="visually-hidden">critical: </span>' in card


def test_a_hostile_service_name_is_escaped_in_the_card(pages):  # noqa: F811
    qd, client = pages
    write(qd, T0, service('<img src=x onerror="alert(1)">', instance("x-1", check("critical"))))

    card = now_card(client)

    assert "<img" not in card
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in card


def test_a_retry_storm_and_payload_mismatches_of_the_last_minutes_are_said(pages):  # noqa: F811
    qd, client = pages
    write(qd, T0, service("orders", instance("o-1", check("passing"))))
    at_ms = int(NOW.timestamp() * 1000) - 120_000
    with qd.store.session(write=True) as db:
        for n in range(14):  # one key, 14 events in one minute: past the storm threshold (10)
            db.add(IdemEventRow(stream="s", entry_id=f"1-{n}", at_ms=at_ms + n, service="orders",
                                key="k1", kind="duplicate_inflight"))  # fmt: skip
        for n in range(3):
            db.add(IdemEventRow(stream="s", entry_id=f"2-{n}", at_ms=at_ms + n, service="orders",
                                key="k2", kind="payload_mismatch"))  # fmt: skip
        # An hour old: not "now".
        db.add(IdemEventRow(stream="s", entry_id="3-0", at_ms=at_ms - 3_600_000,
                            service="billing", key="k3", kind="payload_mismatch"))  # fmt: skip

    card = now_card(client)
    said = lines(card)

    assert said["storm"] == "warning: A retry storm on orders: one key hit 14 times in a minute."
    assert said["mismatch"].startswith("warning: 3 payload mismatches on orders in the last 15")
    assert 'href="/idempotency?service=orders&amp;kind=payload_mismatch"' in card
    assert "billing" not in card
