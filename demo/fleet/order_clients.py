"""Clients of the orders API that retry the way real ones do, each order with its own key.

Most orders are sent once. Some clients retry after a short wait with the same key (a lost
answer), some double-submit (two requests at once), a few reuse a key for another order (a
client bug), and now and then a bulk order takes longer than the client waits, so it retries
while the first is still running past its key's TTL.

Now and then the orders instance stops the world while it places an order (the client asks for
it with the `X-Demo-Stall-Ms` header on the first attempt only; the payload, and so the
fingerprint, stays the same). The key expires while the watchdog is frozen too; the client
gives up, retries on the other instance until the key is free and that instance places the
order. The frozen instance wakes to find its key taken: `renew_failed`, then `lock_expired`
when it completes the order, or `release_denied` when the client's `deadline_ms` had passed
and it answers 504 and releases a key that is no longer its own.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
import uuid
from urllib.parse import urlsplit

log = logging.getLogger("demo.fleet.order_clients")
ITEMS = ("tea", "coffee", "mugs", "filters", "kettle")
RETRY_SHARE = 0.15
DOUBLE_SUBMIT_SHARE = 0.06
REUSED_KEY_SHARE = 0.03
BULK_SHARE = 0.03
BULK_WORK_MS = 2500  # past the bulk path's 1 s key TTL
CLIENT_TIMEOUT_S = 5.0
BULK_CLIENT_WAIT_S = 1.3  # the impatient client retries the bulk order after this
STALL_SHARE = 0.02
STALL_HEADER = "X-Demo-Stall-Ms"
STALL_MS = 2600  # past the orders key's 2 s TTL (demo/fleet/orders_keys.py)
STALL_CLIENT_WAIT_S = 1.0
STALL_DEADLINE_MS = 1500  # half the stalled orders carry a deadline the stall outlasts
RETRY_WAIT_S = 0.4  # between retries answered 409 (the key still held)
RETRIES = 8


def post_order(
    url: str,
    key: str,
    order: dict,
    timeout: float = CLIENT_TIMEOUT_S,
    headers: dict[str, str] | None = None,
) -> int:
    """POST one order with its key; return the status (0 when no answer came in time)."""
    base = urlsplit(url)
    connection = http.client.HTTPConnection(base.hostname, base.port, timeout=timeout)
    body = json.dumps(order).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": f'"{key}"', **(headers or {})}
    try:
        connection.request("POST", "/orders", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as error:
        log.debug("POST %s/orders: %s", base.netloc, error)
        return 0
    finally:
        connection.close()


def place_stalled(urls: list[str], key: str, order: dict, chooser: random.Random) -> int:
    """Send an order whose first attempt stalls its instance; retry elsewhere until placed.

    Return the status of the last answer (0 when none came).
    """
    if chooser.random() < 0.5:
        order = {**order, "deadline_ms": STALL_DEADLINE_MS}
    first = chooser.choice(urls)
    stall = {STALL_HEADER: str(STALL_MS)}
    status = post_order(first, key, order, timeout=STALL_CLIENT_WAIT_S, headers=stall)
    others = [url for url in urls if url != first] or urls
    for _ in range(RETRIES if status == 0 else 0):
        status = post_order(chooser.choice(others), key, order)
        if status != 409:
            break
        time.sleep(RETRY_WAIT_S)  # still held (by the frozen instance): try again shortly
    return status


def place_one(urls: list[str], chooser: random.Random) -> None:
    """Place one order the way one client does, retries and mistakes included."""
    key = str(uuid.UUID(int=chooser.getrandbits(128), version=4))
    order = {"item": chooser.choice(ITEMS), "qty": chooser.randint(1, 5)}
    draw = chooser.random()
    if draw >= 1 - STALL_SHARE:
        place_stalled(urls, key, order, chooser)
        return
    if draw < BULK_SHARE:
        bulk = {**order, "bulk": True, "work_ms": BULK_WORK_MS}
        if post_order(chooser.choice(urls), key, bulk, timeout=BULK_CLIENT_WAIT_S) == 0:
            # It gave up waiting and sends the order again with the same key, while the
            # first still runs past its key's TTL: the order is placed twice.
            post_order(chooser.choice(urls), key, bulk)
        return
    if draw < BULK_SHARE + DOUBLE_SUBMIT_SHARE:
        twins = [
            threading.Thread(target=post_order, args=(chooser.choice(urls), key, order))
            for _ in range(2)
        ]
        for twin in twins:
            twin.start()
        for twin in twins:
            twin.join()
        return
    post_order(chooser.choice(urls), key, order)
    if draw < BULK_SHARE + DOUBLE_SUBMIT_SHARE + RETRY_SHARE:
        post_order(chooser.choice(urls), key, order)  # the answer was "lost": same key again
    elif draw < BULK_SHARE + DOUBLE_SUBMIT_SHARE + RETRY_SHARE + REUSED_KEY_SHARE:
        post_order(chooser.choice(urls), key, {**order, "qty": order["qty"] + 1})


def send_orders(urls: list[str], rate: float, stop: threading.Event) -> None:
    """Place about `rate` orders a second (Poisson arrivals), each in its own thread."""
    chooser = random.Random()
    while not stop.wait(chooser.expovariate(rate)):
        seed = chooser.getrandbits(64)
        threading.Thread(
            target=place_one, args=(urls, random.Random(seed)), name="order", daemon=True
        ).start()
