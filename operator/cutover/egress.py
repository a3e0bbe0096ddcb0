"""The outbound policy for gates: which addresses the operator may send a gate's request to.
Notifications (``cutover.notify``) go out under the same policy, through the same session.

A gate's ``address`` is written by whoever may create a Migration, but the request leaves from
the operator's network position and may carry a Secret the author cannot read. So the operator,
not the author, decides where gate requests may go:

* ``CUTOVER_GATE_ALLOWED_HOSTS`` (comma-separated, read once at start): when set, only the
  listed hosts and networks are allowed; when unset or empty, every address is allowed except
  the always-denied ones below. Entries: an IP address (``10.0.0.7``, ``fd00::7``), a CIDR
  (``10.0.0.0/8``, ``fd00::/8``), a host name (``prometheus.monitoring.svc``, exact match) or
  ``*.`` and a domain (``*.monitoring.svc``: any name below it, not the domain itself).
* Always denied: link-local addresses (``169.254.0.0/16``, ``fe80::/10``: cloud metadata lives
  there), the cloud metadata addresses outside link-local (``fd00:ec2::254``,
  ``100.100.100.200``) and the Kubernetes API server the operator talks to (its address and
  port). An allowlist entry lying wholly inside a denied link-local or metadata range opens it
  (the administrator named it on purpose); broad entries such as ``0.0.0.0/0`` and host names
  never do. The API server is never opened: no gate has a reason to query it.
* ``CUTOVER_GATE_ALLOW_INSECURE_TLS`` (``true``/``false``, default ``false``): whether a gate may
  set ``insecureSkipVerify``.

Every address a host name resolves to is checked, and :mod:`cutover.providers.http` connects
only to an address it checked (no second lookup a DNS answer could change in between). An
invalid setting refuses every gate, naming the setting, rather than stopping the operator.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import urlsplit

log = logging.getLogger("cutover.egress")

ALLOWED_HOSTS_ENV = "CUTOVER_GATE_ALLOWED_HOSTS"
ALLOW_INSECURE_TLS_ENV = "CUTOVER_GATE_ALLOW_INSECURE_TLS"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# (host, port) -> the addresses it resolves to, as text (a failed lookup raises OSError).
Resolver = Callable[[str, int], list[str]]

LINK_LOCAL: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
)
# Instance metadata services that do not live in link-local space (AWS' IPv6 endpoint, Alibaba).
METADATA: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


class Refusal(StrEnum):
    """Why the outbound policy refused a gate request."""

    not_allowed = "NotInAllowlist"
    link_local = "LinkLocal"
    metadata = "CloudMetadata"
    api_server = "KubernetesAPIServer"
    insecure_tls = "InsecureTLSNotAllowed"
    bad_address = "BadAddress"
    invalid_policy = "InvalidPolicy"


class EgressRefused(Exception):
    """A gate request the policy refused. Deliberately not an ``OSError``: HTTP clients retry
    or wrap those, and a refusal must reach the caller as itself, with no request made."""

    def __init__(self, reason: Refusal, target: str, why: str) -> None:
        super().__init__(f"refused by the operator's outbound policy: {target}: {why}")
        self.reason = reason
        self.target = target
        self.why = why


@dataclass(frozen=True)
class Target:
    """Where a gate URL points: scheme, host (no brackets, lower case) and port."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_target(url: str) -> Target:
    """The scheme, host and port of ``url``; never keeps the ``user:password@`` part."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise EgressRefused(Refusal.bad_address, "the gate address", str(error)) from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise EgressRefused(
            Refusal.bad_address, "the gate address", f"scheme {scheme!r} is not http or https"
        )
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise EgressRefused(Refusal.bad_address, "the gate address", "it names no host")
    return Target(scheme, host, port if port is not None else _DEFAULT_PORTS[scheme])


def parse_ip(text: str) -> IPAddress | None:
    """An IP address from ``text`` (an IPv6 zone ``%eth0`` is dropped), None for a name."""
    try:
        return ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None


def _embedded(address: IPAddress) -> list[IPAddress]:
    """``address`` and the IPv4 address it carries (mapped, NAT64, 6to4): all reach the same."""
    found: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return found


def _inside(network: IPNetwork, ranges: Iterable[IPNetwork]) -> bool:
    return any(
        network.version == r.version and network.subnet_of(r)  # type: ignore[arg-type]
        for r in ranges
    )


@dataclass(frozen=True)
class Allowlist:
    networks: tuple[IPNetwork, ...] = ()
    hosts: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()  # "*.monitoring.svc" is kept as ".monitoring.svc"

    def names(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return host in self.hosts or any(host.endswith(domain) for domain in self.domains)

    def covers(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)

    def opens(self, address: IPAddress, ranges: Iterable[IPNetwork]) -> bool:
        """Whether an entry lying wholly inside one of ``ranges`` lists ``address``."""
        return any(address in n and _inside(n, ranges) for n in self.networks)

    def describe(self) -> str:
        return ",".join(
            [str(n) for n in self.networks] + sorted(self.hosts) + [f"*{d}" for d in self.domains]
        )


def parse_allowlist(text: str) -> Allowlist:
    """Parse ``CUTOVER_GATE_ALLOWED_HOSTS``; raises ValueError naming the first bad entry."""
    networks: list[IPNetwork] = []
    hosts: set[str] = set()
    domains: list[str] = []
    for raw in text.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if "/" in entry:
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError as error:
                raise ValueError(f"entry {raw.strip()!r} is not a CIDR: {error}") from None
            continue
        address = parse_ip(entry.strip("[]"))
        if address is not None:
            networks.append(ipaddress.ip_network(address))
            continue
        wildcard = entry.startswith("*.")
        name = entry[2:] if wildcard else entry
        name = name.rstrip(".")
        if not name or not all(_HOST_LABEL.match(label) for label in name.split(".")):
            raise ValueError(
                f"entry {raw.strip()!r} is not an IP address, a CIDR, a host name or *.domain"
                " (no schemes, ports or paths)"
            )
        if wildcard:
            domains.append("." + name)
        else:
            hosts.add(name)
    return Allowlist(tuple(networks), frozenset(hosts), tuple(domains))


def parse_flag(name: str, text: str | None) -> bool:
    value = (text or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={text!r} is not true or false")


def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (a literal resolves to itself), in the resolver's
    order; raises OSError when the name does not resolve."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class EgressPolicy:
    """The operator's decision on gate requests. ``allowlist`` None allows every address that
    is not always denied; ``error`` set (an invalid setting) refuses everything."""

    allowlist: Allowlist | None = None
    allow_insecure_tls: bool = False
    # (host as configured, port) of the API server; its addresses are resolved once, at start.
    api_server: tuple[tuple[str, int], ...] = ()
    api_addresses: frozenset[tuple[IPAddress, int]] = frozenset()
    error: str | None = None
    resolver: Resolver = field(default=system_resolver, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        *,
        allowed_hosts: str | None = None,
        allow_insecure_tls: bool = False,
        api_servers: Iterable[str] = (),
        resolver: Resolver = system_resolver,
        error: str | None = None,
    ) -> EgressPolicy:
        """A policy from its settings. ``api_servers`` are URLs or ``host:port`` pairs."""
        allowlist: Allowlist | None = None
        if error is None and allowed_hosts is not None and allowed_hosts.strip():
            try:
                allowlist = parse_allowlist(allowed_hosts)
            except ValueError as problem:
                error = f"{ALLOWED_HOSTS_ENV} is invalid: {problem}"
        servers = tuple(dict.fromkeys(t for s in api_servers if (t := _api_target(s))))
        addresses: set[tuple[IPAddress, int]] = set()
        for host, port in servers:
            try:
                resolved = [host] if parse_ip(host) else resolver(host, port)
            except OSError as problem:
                log.warning(
                    "API server address not resolved", extra={"host": host, "error": str(problem)}
                )
                continue
            addresses.update(
                (a, port) for text in resolved if (ip := parse_ip(text)) for a in _embedded(ip)
            )
        return cls(
            allowlist=allowlist,
            allow_insecure_tls=allow_insecure_tls,
            api_server=servers,
            api_addresses=frozenset(addresses),
            error=error,
            resolver=resolver,
        )

    @classmethod
    def from_environment(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        api_server: str | None = None,
        resolver: Resolver = system_resolver,
    ) -> EgressPolicy:
        """The policy the operator runs with: its env, its API server (the URL it talks to and,
        in a pod, ``KUBERNETES_SERVICE_HOST``/``_PORT``). Logged once; never raises."""
        env = os.environ if environ is None else environ
        servers = [api_server or ""]
        if env.get("KUBERNETES_SERVICE_HOST"):
            host = env["KUBERNETES_SERVICE_HOST"]
            host = f"[{host}]" if ":" in host else host
            servers.append(f"https://{host}:{env.get('KUBERNETES_SERVICE_PORT') or 443}")
        error: str | None = None
        insecure = False
        try:
            insecure = parse_flag(ALLOW_INSECURE_TLS_ENV, env.get(ALLOW_INSECURE_TLS_ENV))
        except ValueError as problem:
            error = f"{ALLOW_INSECURE_TLS_ENV} is invalid: {problem}"
        policy = cls.build(
            allowed_hosts=env.get(ALLOWED_HOSTS_ENV),
            allow_insecure_tls=insecure,
            api_servers=servers,
            resolver=resolver,
            error=error,
        )
        policy.log_summary()
        return policy

    def log_summary(self) -> None:
        detail: dict[str, object] = {
            "allowed": self.allowlist.describe() if self.allowlist else "all but always-denied",
            "allow_insecure_tls": self.allow_insecure_tls,
            "api_server": ",".join(f"{h}:{p}" for h, p in self.api_server),
        }
        if self.error:
            detail["error"] = self.error
            log.error("gate outbound policy is invalid: every gate is refused", extra=detail)
        else:
            log.info("gate outbound policy", extra=detail)

    # --- decisions -------------------------------------------------------------------------------

    def check_tls(self, target: str, insecure_skip_verify: bool) -> None:
        if insecure_skip_verify and not self.allow_insecure_tls:
            raise EgressRefused(
                Refusal.insecure_tls,
                target,
                "the gate sets insecureSkipVerify but the operator does not allow gates to skip"
                f" TLS verification ({ALLOW_INSECURE_TLS_ENV} is not true); give the gate a `ca`"
                " instead",
            )

    def check_name(self, target: Target) -> None:
        """What can be decided without DNS: an invalid policy, an allowlisted name or literal,
        and a literal address that is always denied."""
        if self.error is not None:
            raise EgressRefused(Refusal.invalid_policy, str(target), self.error)
        if (target.host, target.port) in self.api_server:  # its addresses may have changed
            raise EgressRefused(Refusal.api_server, str(target), _API_SERVER)
        literal = parse_ip(target.host)
        if literal is not None:
            self.check_addresses(target, [target.host])
        elif (
            self.allowlist is not None
            and not self.allowlist.names(target.host)
            and not self.allowlist.networks  # then no address it resolves to can be allowed
        ):
            raise EgressRefused(Refusal.not_allowed, str(target), self._not_listed())

    def check_addresses(self, target: Target, addresses: Iterable[str]) -> None:
        """Refuse unless every address ``target`` resolved to may be connected to."""
        if self.error is not None:
            raise EgressRefused(Refusal.invalid_policy, str(target), self.error)
        named = self.allowlist is not None and self.allowlist.names(target.host)
        for text in addresses:
            address = parse_ip(text)
            if address is None:
                raise EgressRefused(
                    Refusal.bad_address, str(target), f"resolved to {text!r}, not an IP address"
                )
            self._check_address(target, address, named)

    def _check_address(self, target: Target, address: IPAddress, named: bool) -> None:
        where = str(target) if str(address) == target.host else f"{target} ({address})"
        for reached in _embedded(address):
            if (reached, target.port) in self.api_addresses:
                raise EgressRefused(Refusal.api_server, where, _API_SERVER)
            for ranges, reason, what in _ALWAYS_DENIED:
                listed = self.allowlist is not None and self.allowlist.opens(reached, ranges)
                if any(reached in n for n in ranges) and not listed:
                    why = f"{reached} is {what}; list it in {ALLOWED_HOSTS_ENV} to allow it"
                    raise EgressRefused(reason, where, why)
        if self.allowlist is not None and not named and not self.allowlist.covers(address):
            raise EgressRefused(Refusal.not_allowed, where, self._not_listed())

    def _not_listed(self) -> str:
        assert self.allowlist is not None
        return f"not in {ALLOWED_HOSTS_ENV} ({self.allowlist.describe()})"

    def resolve(self, target: Target) -> list[str]:
        """The checked addresses to connect to for ``target``, in the resolver's order.

        Raises EgressRefused, or OSError when the name does not resolve."""
        self.check_name(target)
        addresses = self.resolver(target.host, target.port)
        if not addresses:
            raise OSError(f"{target.host} resolved to no address")
        self.check_addresses(target, addresses)
        return addresses


_API_SERVER = "this is the Kubernetes API server the operator talks to; gates may never query it"
_ALWAYS_DENIED: tuple[tuple[tuple[IPNetwork, ...], Refusal, str], ...] = (
    (LINK_LOCAL, Refusal.link_local, "link-local (cloud metadata services live there)"),
    (METADATA, Refusal.metadata, "a cloud metadata service"),
)


def _api_target(server: str) -> tuple[str, int] | None:
    if not server:
        return None
    if "://" not in server:
        server = f"https://{server}"
    try:
        target = parse_target(server)
    except EgressRefused:
        log.warning("API server address not understood", extra={"server": server})
        return None
    return target.host, target.port
