"""Measuring gates: renders each gate's templates, asks its provider, and turns answers into
Readings. What a gate's block means is its provider's business (``cutover.providers``): this
module only dispatches, reads the Secrets the provider names and applies the outbound policy.

Providers are blocking (``prometheus-api-client`` uses ``requests``), so every query runs in a
bounded thread pool and never on the event loop. Credentials come from Secrets in the
Migration's namespace only; they are passed to providers and never logged.

Providers are kept between checks (one per kind, options, TLS setting and credentials), so a
gate checked every second reuses its HTTP connection instead of opening a new one each time.
A failing check never raises: whatever goes wrong becomes a ``Reading`` of kind ``error`` (or
``no_data``), and ``core.gates`` decides what that means for the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cutover.api import CompareTest, Gate, MigrationSpec, MigrationStatus, SecretKeyRef
from cutover.core import preview as preview_rules
from cutover.core.gates import Reading, ReadingKind
from cutover.core.promql import TemplateError, render_query
from cutover.durations import parse_duration
from cutover.egress import EgressPolicy, EgressRefused, Refusal, parse_target
from cutover.kube import Kube, KubeError
from cutover.providers import (
    ClusterMeasure,
    GateCheck,
    GateRequest,
    InvalidQuery,
    MetricProvider,
    MultipleSeries,
    NoData,
    NotYet,
    ProviderError,
    provider_for,
    source_for,
    variables,
)

log = logging.getLogger("cutover.gates")
T = TypeVar("T")
ProviderFactory = Callable[..., MetricProvider]
# Mann-Whitney compares series sampled at this many points over the gate's window.
RANGE_POINTS = 30
# Prometheus' range API takes whole seconds; finer steps only repeat samples.
MIN_RANGE_STEP = 1.0
SECRET_TTL = 60.0
MAX_PROVIDERS = 64


def query_variables(
    spec: MigrationSpec, namespace: str, migration: str, gate: Gate
) -> dict[str, str]:
    base = {
        "namespace": namespace,
        "migration": migration,
        "blue": spec.blue.deployment,
        "green": spec.green.deployment,
        "service": spec.traffic.service or "",
    }
    if spec.preview is not None:
        # The preview Service green's pods answer on before any user traffic (core.preview).
        base["preview.service"] = preview_rules.service_name(spec, migration)
    return variables(base, gate)


def gate_request(spec: MigrationSpec, namespace: str, migration: str, gate: Gate) -> GateRequest:
    """What a check of ``gate`` asks; raises TemplateError naming unknown variables."""
    values = query_variables(spec, namespace, migration, gate)
    source = source_for(gate)
    rendered = {field: render_query(text, values) for field, text in source.templates(gate)}
    return source.request(gate, rendered)


def rendered_queries(
    spec: MigrationSpec, namespace: str, migration: str, gate: Gate
) -> tuple[str, str | None]:
    """(query, baseline query or None); raises TemplateError naming unknown variables."""
    request = gate_request(spec, namespace, migration, gate)
    return request.query, request.baseline


def range_step(window_seconds: float) -> float:
    """Seconds between two points of a Mann-Whitney range query over ``window_seconds``."""
    return max(window_seconds / RANGE_POINTS, MIN_RANGE_STEP)


class _SecretProblem(Exception):
    """A Secret a gate needs cannot be read; ``field`` is the spec path that names it."""

    def __init__(self, field: str, error: KubeError) -> None:
        super().__init__(f"{field}: {error}")
        self.field = field


class GateChecker:
    def __init__(
        self,
        kube: Kube,
        *,
        max_workers: int = 8,
        provider_factory: ProviderFactory = provider_for,
        secret_ttl: float = SECRET_TTL,
        clock: Callable[[], float] = time.monotonic,
        egress: EgressPolicy | None = None,
    ) -> None:
        self._kube = kube
        # Read once, at start: the operator's settings, not the Migration author's.
        self._egress = (
            egress
            if egress is not None
            else EgressPolicy.from_environment(api_server=_api_server_url(kube))
        )
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="gates")
        self._factory = provider_factory
        self._secret_ttl = secret_ttl
        self._clock = clock
        self._secrets: dict[tuple[str, str, str], tuple[float, str]] = {}
        # Keyed by everything the provider is built from, credentials included (memory only).
        self._providers: OrderedDict[tuple[Any, ...], MetricProvider] = OrderedDict()
        self._ca_files: dict[str, str] = {}

    @property
    def egress(self) -> EgressPolicy:
        """The operator's outbound policy (notifications go out under it too)."""
        return self._egress

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        while self._providers:
            _, provider = self._providers.popitem()
            _close(provider)
        for path in self._ca_files.values():
            with contextlib.suppress(OSError):
                os.unlink(path)
        self._ca_files.clear()

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    # --- credentials ---

    async def _secret(self, namespace: str, ref: SecretKeyRef) -> str:
        cache_key = (namespace, ref.name, ref.key)
        cached = self._secrets.get(cache_key)
        if cached and self._clock() - cached[0] < self._secret_ttl:
            return cached[1]
        value = await self._kube.read_secret_key(namespace, ref.name, ref.key)
        self._secrets[cache_key] = (self._clock(), value)
        return value

    async def _credentials(
        self, namespace: str, gate: Gate, path: str
    ) -> tuple[dict[str, str], str | None]:
        """The values of the Secrets the gate's provider names (keyed by field) and its CA
        bundle; raises _SecretProblem naming the field of the missing one."""

        async def read(field: str, ref: SecretKeyRef) -> str:
            try:
                return await self._secret(namespace, ref)
            except KubeError as error:
                raise _SecretProblem(f"{path}.{field}", error) from None

        secrets = {
            field: await read(field, ref) for field, ref in source_for(gate).secret_refs(gate)
        }
        ca: SecretKeyRef | None = getattr(gate.source, "ca", None)
        return secrets, (await read("ca", ca) if ca is not None else None)

    def _ca_file(self, bundle: str) -> str:
        digest = hashlib.sha256(bundle.encode()).hexdigest()
        path = self._ca_files.get(digest)
        if path is None:
            handle, path = tempfile.mkstemp(prefix="cutover-ca-", suffix=".pem")
            with os.fdopen(handle, "w") as out:
                out.write(bundle)
            self._ca_files[digest] = path
        return path

    def _check_egress(self, gate: Gate, request: GateRequest) -> None:
        """What the policy decides without DNS; raises EgressRefused before any Secret is read.

        The addresses themselves are checked by the provider's session on every connection; a
        request without an address (its provider checks the one it finds in a Secret, or acts
        in the cluster) has nothing to check here."""
        if not request.address:
            return
        target = parse_target(request.address)
        self._egress.check_tls(str(target), _insecure(gate))
        self._egress.check_name(target)

    async def _provider(
        self, namespace: str, gate: Gate, request: GateRequest, path: str
    ) -> MetricProvider:
        self._check_egress(gate, request)
        secrets, ca_bundle = await self._credentials(namespace, gate, path)
        block = gate.source
        options: dict[str, Any] = {
            **source_for(gate).client_options(gate, secrets),
            **dict(request.options),
            "timeout": parse_duration(block.timeout),
        }
        if hasattr(block, "insecure_skip_verify"):  # providers speaking TLS themselves
            options["insecure_skip_verify"] = block.insecure_skip_verify
        if ca_bundle is not None:
            options["ca_file"] = self._ca_file(ca_bundle)
        # Everything the client is built from, credentials included (memory only).
        key = (gate.provider, *sorted(options.items()))
        provider = self._providers.get(key)
        if provider is not None:
            self._providers.move_to_end(key)
            return provider
        provider = self._factory(gate.provider, **options, egress=self._egress)
        self._providers[key] = provider
        while len(self._providers) > MAX_PROVIDERS:
            _, evicted = self._providers.popitem(last=False)
            _close(evicted)
        return provider

    # --- before the run ---

    async def preflight(self, spec: MigrationSpec, namespace: str, migration: str) -> list[str]:
        """Problems that stop a run before traffic moves: bad templates, PromQL, Secrets, and
        addresses (or skipped TLS) the operator's outbound policy refuses.

        Each problem starts with the field path users write in YAML. Prometheus being
        unreachable is not a problem of the spec: the gate's ``onError`` decides later.
        """
        problems: list[str] = []
        for index, gate in enumerate(spec.gates):
            found = await self._preflight_gate(spec, namespace, migration, index, gate)
            problems.extend(found)
        return problems

    async def _preflight_gate(
        self, spec: MigrationSpec, namespace: str, migration: str, index: int, gate: Gate
    ) -> list[str]:
        path = f"spec.gates[{index}]"
        block_path = f"{path}.{gate.provider}"
        values = query_variables(spec, namespace, migration, gate)
        source = source_for(gate)
        problems: list[str] = []
        texts: dict[str, str] = {}
        rendered: dict[str, str] = {}
        for field, template in source.templates(gate):
            try:
                texts[field] = rendered[field] = render_query(template, values)
            except TemplateError as error:
                problems.append(f"{path}.{field}: {error}")
                rendered[field] = template  # its problem is reported; the rest is still checked
        request = source.request(gate, rendered)
        if isinstance(source, ClusterMeasure):  # no client, no Secret: the Job is the check
            return problems
        refused = await self._preflight_egress(gate, request, path)
        if refused is not None:  # nothing is sent and no Secret is read for a refused gate
            return [*problems, refused]
        try:
            provider = await self._provider(namespace, gate, request, block_path)
        except _SecretProblem as error:
            return [*problems, str(error)]
        except (ValueError, TypeError) as error:
            return [*problems, f"{block_path}: {error}"]
        for field, text in texts.items():
            syntax = source.syntax_problem(field, text)
            if syntax is not None:  # the parser `cutover lint` uses: no need to ask the provider
                problems.append(f"{path}.{field}: {syntax}")
                continue
            if not source.checks_query:
                continue
            try:
                await self._blocking(provider.check_query, text)
            except InvalidQuery as error:
                problems.append(f"{path}.{field}: Prometheus says: {error}")
            except ProviderError as error:
                detail = {"gate": gate.name, "field": field, "error": str(error)}
                log.warning("gate query not checked", extra=detail)
        return problems

    async def _preflight_egress(self, gate: Gate, request: GateRequest, path: str) -> str | None:
        """The refusal of ``gate``'s address by the outbound policy, as a problem, or None.

        A name that does not resolve now is not refused: like an unreachable Prometheus, it is
        the gate's ``onError`` to judge later (and the address is checked again then)."""
        block = f"{path}.{gate.provider}"
        if not request.address:  # checked by the provider when it connects
            return None
        try:
            target = parse_target(request.address)
            self._egress.check_tls(str(target), _insecure(gate))
        except EgressRefused as refusal:
            field = (
                "insecureSkipVerify"
                if refusal.reason is Refusal.insecure_tls
                else request.address_field
            )
            return _refused(gate, f"{block}.{field}", refusal)
        try:
            await self._blocking(self._egress.resolve, target)
        except EgressRefused as refusal:
            return _refused(gate, f"{block}.{request.address_field}", refusal)
        except OSError as error:
            detail = {"gate": gate.name, "address": str(target), "error": str(error)}
            log.warning("gate address not resolved", extra=detail)
        return None

    # --- during the run ---

    async def measure(
        self,
        spec: MigrationSpec,
        namespace: str,
        migration: str,
        gates: list[Gate],
        now: datetime,
        *,
        status: MigrationStatus | None = None,
        uid: str = "",
    ) -> dict[str, Reading]:
        """A reading per gate. ``status`` and ``uid`` name the run and own what a provider
        acting in the cluster creates (a gate's Job)."""
        results = await asyncio.gather(
            *(
                self._measure_one(spec, namespace, migration, gate, now, status, uid)
                for gate in gates
            )
        )
        return dict(zip((g.name for g in gates), results, strict=True))

    async def _measure_one(
        self,
        spec: MigrationSpec,
        namespace: str,
        migration: str,
        gate: Gate,
        now: datetime,
        status: MigrationStatus | None = None,
        uid: str = "",
    ) -> Reading:
        try:
            source = source_for(gate)
            if isinstance(source, ClusterMeasure):
                check = _gate_check(namespace, migration, uid, gate, status)
                value, message = await source.measure_in_cluster(self._kube, gate, check)
                return Reading(ReadingKind.value, value=value, message=message)
            return await self._read(spec, namespace, migration, gate, now)
        except NotYet as pending:
            return Reading.pending(str(pending))
        except NoData as error:
            return Reading.no_data(str(error) or "query returned no data")
        except MultipleSeries as error:
            return Reading.error(f"query returned several series: {error}")
        except (ProviderError, KubeError, TemplateError, _SecretProblem) as error:
            return Reading.error(str(error))
        except EgressRefused as refusal:
            return Reading.error(_refused(gate, "", refusal))
        except Exception as error:
            # A provider bug must not stop the reconcile of every other gate and Migration.
            detail = {"gate": gate.name, "error": type(error).__name__}
            log.exception("gate check crashed", extra=detail)
            return Reading.error(f"gate check crashed: {type(error).__name__}")

    async def _read(
        self, spec: MigrationSpec, namespace: str, migration: str, gate: Gate, now: datetime
    ) -> Reading:
        request = gate_request(spec, namespace, migration, gate)
        query, baseline = request.query, request.baseline
        index = next((i for i, g in enumerate(spec.gates) if g.name == gate.name), 0)
        provider = await self._provider(
            namespace, gate, request, f"spec.gates[{index}].{gate.provider}"
        )
        compare = gate.compare
        if compare is not None and compare.test is CompareTest.mannwhitney:
            assert baseline is not None
            window = parse_duration(compare.window)
            start, step = now - timedelta(seconds=window), range_step(window)
            green, blue = await _both(
                self._blocking(provider.query_range, query, start, now, step),
                self._blocking(provider.query_range, baseline, start, now, step),
            )
            return Reading.samples(tuple(green), tuple(blue))
        if baseline is None:
            return Reading.of(await self._blocking(provider.query, query))
        # Both at once: the two values describe the same moment, and a check takes one RTT.
        value, base = await _both(
            self._blocking(provider.query, query), self._blocking(provider.query, baseline)
        )
        return Reading.of(value, base)


async def _both(first: Awaitable[T], second: Awaitable[T]) -> tuple[T, T]:
    """Both results; if either failed, the more serious failure (an error over no data)."""
    results = await asyncio.gather(first, second, return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    if failures:
        failures.sort(key=lambda e: isinstance(e, NoData))
        raise failures[0]
    a, b = results
    assert not isinstance(a, BaseException) and not isinstance(b, BaseException)
    return a, b


def _insecure(gate: Gate) -> bool:
    return bool(getattr(gate.source, "insecure_skip_verify", False))


def _gate_check(
    namespace: str, migration: str, uid: str, gate: Gate, status: MigrationStatus | None
) -> GateCheck:
    """Which check of which run this is; ProviderError when the run is not known yet."""
    if status is None or not status.run_id or not uid:
        raise ProviderError("the run is not known yet", error_type="no_run")
    record = status.gate(gate.name)
    recorded = record.passed + record.failed + record.inconclusive + record.errors if record else 0
    return GateCheck(namespace, migration, uid, status.run_id, gate.name, recorded + 1)


def _refused(gate: Gate, field: str, refusal: EgressRefused) -> str:
    """Log a refusal (address without credentials) and say it the way conditions do."""
    detail = {"gate": gate.name, "address": refusal.target, "reason": refusal.reason.value}
    log.warning("gate address refused", extra=detail)
    return f"{field}: gate {gate.name!r}: {refusal}" if field else str(refusal)


def _api_server_url(kube: Kube) -> str | None:
    """The API server URL ``kube`` talks to, so that gates can be refused it.

    ``Kube`` exposes no accessor; its client's configuration is only read here."""
    configuration = getattr(getattr(kube, "_api", None), "configuration", None)
    host = getattr(configuration, "host", None)
    return host if isinstance(host, str) and host else None


def _close(provider: MetricProvider) -> None:
    close = getattr(provider, "close", None)
    if callable(close):
        with contextlib.suppress(Exception):
            close()


def summarize(readings: Mapping[str, Reading]) -> dict[str, Any]:
    """Loggable form of readings (values only, never credentials)."""
    return {name: r.value if r.value is not None else r.kind.value for name, r in readings.items()}
