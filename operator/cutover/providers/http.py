"""The HTTP session every gate provider sends its requests through.

* With an :class:`~cutover.egress.EgressPolicy`, every new connection resolves the host once,
  has the policy check every address it resolved to, and connects only to those addresses: a
  DNS answer cannot change between the check and the connect, and a redirect's new host is
  checked the same way. A refusal raises :class:`~cutover.egress.EgressRefused` before any
  byte is sent.
* Credentials (``Authorization``) are dropped when a redirect leaves the origin (scheme, host
  or port), stricter than ``requests``, which keeps them on an http-to-https upgrade.
* The environment is not trusted: no ``HTTP(S)_PROXY`` (a proxy would connect on our behalf to
  an address we never checked) and no ``.netrc`` (its passwords must not go to an author's
  address).
"""

from __future__ import annotations

import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

from cutover.egress import EgressPolicy, EgressRefused, Refusal, Target

__all__ = ["GateSession", "gate_session"]

log = logging.getLogger("cutover.gates")

_MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _CheckedConnection(HTTPConnection):
    """Connects only to addresses the policy accepted for this connection's host."""

    egress: EgressPolicy  # set by the per-policy subclasses made in ``_pool_classes``
    scheme = "http"

    def _new_conn(self) -> socket.socket:
        target = Target(self.scheme, self.host.strip("[]").rstrip(".").lower(), self.port or 0)
        try:
            addresses = self.egress.resolve(target)
        except EgressRefused as refusal:
            detail = {"address": refusal.target, "reason": refusal.reason.value}
            log.warning("gate connection refused", extra=detail)
            raise
        except OSError as error:
            raise NewConnectionError(self, f"cannot resolve {target.host}: {error}") from error
        last: Exception | None = None
        dns_host = self._dns_host
        for address in addresses:
            # Connect to the checked address; TLS still verifies and sends SNI for self.host.
            self._dns_host = address.partition("%")[0]
            try:
                return super()._new_conn()
            except (NewConnectionError, ConnectTimeoutError) as error:
                last = error
            finally:
                self._dns_host = dns_host
        assert last is not None
        raise last


class _CheckedHTTPSConnection(_CheckedConnection, HTTPSConnection):
    scheme = "https"


def _pool_classes(policy: EgressPolicy) -> dict[str, type[HTTPConnectionPool]]:
    class Connection(_CheckedConnection):
        egress = policy

    class TLSConnection(_CheckedHTTPSConnection):
        egress = policy

    class Pool(HTTPConnectionPool):
        ConnectionCls = Connection

    class TLSPool(HTTPSConnectionPool):
        ConnectionCls = TLSConnection

    return {"http": Pool, "https": TLSPool}


class _CheckedAdapter(HTTPAdapter):
    def __init__(self, policy: EgressPolicy) -> None:
        self._egress = policy
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self._egress)

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        raise EgressRefused(Refusal.bad_address, "a proxy", "gate requests never use a proxy")


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").rstrip("."), parts.port or _DEFAULT_PORTS.get(scheme)


class GateSession(requests.Session):
    """A ``requests.Session`` that never sends credentials to another origin and, with a
    policy, sends every request through the checked adapter."""

    checked: _CheckedAdapter | None = None

    def should_strip_auth(self, old_url: str, new_url: str) -> bool:
        return _origin(old_url) != _origin(new_url)

    def get_adapter(self, url: str) -> Any:
        # Clients mount their own adapters (PrometheusConnect mounts one at its URL, which
        # would win over ours by prefix): with a policy, no request may bypass the check.
        if self.checked is not None:
            return self.checked
        return super().get_adapter(url)


def gate_session(policy: EgressPolicy | None) -> GateSession:
    """A session for a gate's requests, checked by ``policy`` when one is given."""
    session = GateSession()
    session.trust_env = False
    session.max_redirects = _MAX_REDIRECTS
    if policy is not None:
        session.checked = _CheckedAdapter(policy)
    return session
