"""Reads against Consul's HTTP API through py-consul, with the headers its high-level calls drop.

py-consul's `client.catalog.services()` and friends return only the index and the body; the
collector also needs `X-Consul-Results-Filtered-By-ACLs`, and wants to skip decoding an answer
whose `X-Consul-Index` it already has. So every read goes through `client.http.get` with a
callback of our own, which sees the status, the headers and the raw body.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import consul
import requests

from collectors.base import SourceUnavailable

# Consul >= 1.13: a 200 whose results the token's ACLs narrowed says so in this header.
FILTERED_HEADER = "X-Consul-Results-Filtered-By-ACLs"
FETCH_WORKERS = 8
CATALOG = "/v1/catalog/services"
NODES = "/v1/catalog/nodes"
HEALTH = "/v1/health/state/any"
# Consul's filter expressions (?filter=, Consul >= 1.5) apply to /v1/health/state/<state>.
NON_PASSING_FILTER = 'Status != "passing"'


@dataclass(frozen=True)
class Answer:
    """One answer: its index, its decoded body (None on 404 or when unchanged), whether ACLs
    filtered it, and whether its index was the one the caller already had (body not decoded)."""

    index: int
    data: Any
    filtered: bool = False
    unchanged: bool = False


class ConsulReader:
    """Read-only GETs against one Consul agent; one py-consul client per thread."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        scheme: str,
        token: str | None,
        datacenter: str | None,
        verify: bool | str,
    ) -> None:
        self._host, self._port, self._scheme = host, port, scheme
        self.url = f"{scheme}://{host}:{port}"
        self._token = token
        self._dc = datacenter
        self._verify = verify
        self._local = threading.local()
        self._clients: set[consul.Consul] = set()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def read(
        self,
        path: str,
        *,
        index: int = 0,
        wait: str | None = None,
        params: Sequence[tuple[str, str]] = (),
        known_index: int | None = None,
    ) -> Answer:
        """GET `path`, blocking from `index` when it is given; raise SourceUnavailable."""
        what = f"GET {path}"
        query: list[tuple[str, Any]] = list(params)
        if self._dc:
            query.append(("dc", self._dc))
        if index:
            query.append(("index", index))
            if wait:
                query.append(("wait", wait))
        client = self._client()
        try:
            return client.http.get(
                _decoder(what, known_index),
                path,
                params=query,
                headers=client.prepare_headers(),
                raw=True,
            )
        except requests.exceptions.SSLError as exc:
            raise SourceUnavailable(
                f"TLS error talking to Consul at {self.url}: {short(exc)}", config_error=True
            ) from exc
        except requests.exceptions.RequestException as exc:
            raise SourceUnavailable(
                f"cannot reach Consul at {self.url}: {type(exc).__name__}"
            ) from exc

    def catalog_services(self, index: int = 0, wait: str | None = None) -> Answer:
        """`/v1/catalog/services`: service name -> tags."""
        answer = self.read(CATALOG, index=index, wait=wait)
        data = answer.data
        if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
            raise SourceUnavailable(f"Consul sent an unexpected {CATALOG} answer")
        return answer

    def catalog_nodes(self, index: int = 0, wait: str | None = None) -> Answer:
        """`/v1/catalog/nodes`."""
        answer = self.read(NODES, index=index, wait=wait)
        if not isinstance(answer.data, list):
            raise SourceUnavailable(f"Consul sent an unexpected {NODES} answer")
        return answer

    def health_state(self, non_passing: bool, index: int = 0, wait: str | None = None) -> Answer:
        """Every check, or only those that are not passing."""
        params = [("filter", NON_PASSING_FILTER)] if non_passing else []
        return self.read(HEALTH, index=index, wait=wait, params=params)

    def health_service(self, name: str, known_index: int | None = None) -> Answer:
        """One service's health entries; not decoded when its index is `known_index`."""
        return self.read(f"/v1/health/service/{quote(name, safe='')}", known_index=known_index)

    def health_services(self, known: dict[str, int | None]) -> dict[str, Answer]:
        """Fetch many services, FETCH_WORKERS at a time; `known` maps each to its known index."""
        names = list(known)
        if len(names) <= 1:
            return {n: self.health_service(n, known[n]) for n in names}
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=FETCH_WORKERS, thread_name_prefix="consul-fetch"
                )
            pool = self._pool
        try:
            answers = pool.map(lambda n: self.health_service(n, known[n]), names)
            return dict(zip(names, answers, strict=True))
        except (CancelledError, RuntimeError) as exc:  # close() ran while fetching
            raise SourceUnavailable("the Consul collector was closed") from exc

    def _client(self) -> consul.Consul:
        """This thread's client: requests sessions are not safe to share between threads."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = consul.Consul(
                host=self._host,
                port=self._port,
                scheme=self._scheme,
                dc=self._dc,
                verify=self._verify,
            )
            # py-consul lets CONSUL_HTTP_TOKEN override the token argument; the config wins.
            client.token = self._token
            self._local.client = client
            with self._lock:
                self._clients.add(client)
        return client

    def close_thread_client(self) -> None:
        """Close the calling thread's connections."""
        client = getattr(self._local, "client", None)
        if client is not None:
            self._local.client = None
            with self._lock:
                self._clients.discard(client)
            client.http.session.close()

    def close(self) -> None:
        """Stop the fetch pool and close every thread's connections (long polls end)."""
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            clients = list(self._clients)
        for client in clients:
            client.http.session.close()


def _decoder(what: str, known_index: int | None):
    def decode(response) -> Answer:
        code, headers, body = response
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
        if code == 403:
            raise SourceUnavailable(
                f"Consul denied {what} (HTTP 403): check the ACL token's policy ({short(text)})",
                config_error=True,
            )
        if code == 401:
            raise SourceUnavailable(
                f"Consul refused {what} (HTTP 401): {short(text)}", config_error=True
            )
        if code == 404:
            return Answer(index=0, data=None)
        if code >= 400:
            raise SourceUnavailable(f"Consul error on {what}: {code} {short(text)}")
        index = parse_index(headers.get("X-Consul-Index"))
        filtered = str(headers.get(FILTERED_HEADER, "")).lower() == "true"
        # A filtered answer is always decoded: what it still shows says which permission lacks.
        if known_index is not None and index == known_index and not filtered:
            return Answer(index=index, data=None, filtered=filtered, unchanged=True)
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise SourceUnavailable(f"Consul sent a malformed answer to {what}: {exc}") from exc
        return Answer(index=index, data=data, filtered=filtered)

    return decode


def parse_index(value: Any) -> int:
    """An `X-Consul-Index` header as a number."""
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise SourceUnavailable(f"Consul sent no usable X-Consul-Index ({value!r})") from exc


def short(exc: object) -> str:
    """The first line of an error, at most 200 characters."""
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]
