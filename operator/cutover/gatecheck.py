"""Measuring gates: renders each gate's PromQL, asks its provider, and turns answers into Readings.

Providers are blocking (``prometheus-api-client`` uses ``requests``), so every query runs in a
bounded thread pool and never on the event loop. Credentials come from Secrets in the
Migration's namespace only; they are passed to providers and never logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, TypeVar

from cutover.api import CompareTest, Gate, MigrationSpec, PrometheusQuery
from cutover.core.durations import parse_duration
from cutover.core.gates import Reading
from cutover.core.promql import TemplateError, render_query
from cutover.kube import Kube, KubeError
from cutover.providers import (
    InvalidQuery,
    MetricProvider,
    MultipleSeries,
    NoData,
    ProviderError,
    provider_for,
)

log = logging.getLogger("cutover.gates")
T = TypeVar("T")
ProviderFactory = Callable[..., MetricProvider]
# Mann-Whitney compares series sampled at this many points over the gate's window.
_RANGE_POINTS = 30
_SECRET_TTL = 60.0


def query_variables(
    spec: MigrationSpec, namespace: str, migration: str, gate: Gate
) -> dict[str, str]:
    variables = {
        "namespace": namespace,
        "migration": migration,
        "blue": spec.blue.deployment,
        "green": spec.green.deployment,
        "service": spec.traffic.service or "",
    }
    variables.update({f"args.{k}": v for k, v in gate.prometheus.args.items()})
    return variables


def rendered_queries(
    spec: MigrationSpec, namespace: str, migration: str, gate: Gate
) -> tuple[str, str | None]:
    """(query, baseline query or None); raises TemplateError naming unknown variables."""
    variables = query_variables(spec, namespace, migration, gate)
    query = render_query(gate.prometheus.query, variables)
    baseline = render_query(gate.compare.baseline, variables) if gate.compare is not None else None
    return query, baseline


class GateChecker:
    def __init__(
        self,
        kube: Kube,
        *,
        max_workers: int = 8,
        provider_factory: ProviderFactory = provider_for,
    ) -> None:
        self._kube = kube
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="gates")
        self._factory = provider_factory
        self._secrets: dict[tuple[str, str, str], tuple[float, str]] = {}

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _blocking(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

    async def _secret(self, namespace: str, name: str, key: str) -> str:
        cache_key = (namespace, name, key)
        cached = self._secrets.get(cache_key)
        if cached and time.monotonic() - cached[0] < _SECRET_TTL:
            return cached[1]
        value = await self._kube.read_secret_key(namespace, name, key)
        self._secrets[cache_key] = (time.monotonic(), value)
        return value

    async def _provider(self, namespace: str, query: PrometheusQuery) -> MetricProvider:
        options: dict[str, Any] = {
            "address": query.address,
            "timeout": parse_duration(query.timeout),
            "insecure_skip_verify": query.insecure_skip_verify,
        }
        auth = query.auth
        if auth is not None and auth.bearer_token is not None:
            ref = auth.bearer_token
            options["bearer_token"] = await self._secret(namespace, ref.name, ref.key)
        elif auth is not None and auth.username is not None and auth.password is not None:
            user = await self._secret(namespace, auth.username.name, auth.username.key)
            password = await self._secret(namespace, auth.password.name, auth.password.key)
            options["basic_auth"] = (user, password)
        if query.ca is not None:
            options["ca_file"] = await self._ca_file(namespace, query.ca.name, query.ca.key)
        return self._factory("prometheus", **options)

    async def _ca_file(self, namespace: str, name: str, key: str) -> str:
        import tempfile

        bundle = await self._secret(namespace, name, key)
        handle = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)  # noqa: SIM115
        with handle:
            handle.write(bundle)
        return handle.name

    async def preflight(self, spec: MigrationSpec, namespace: str, migration: str) -> list[str]:
        """Problems that stop a run before traffic moves: bad templates, PromQL, Secrets."""
        problems: list[str] = []
        for index, gate in enumerate(spec.gates):
            path = f"spec.gates[{index}].prometheus"
            try:
                query, baseline = rendered_queries(spec, namespace, migration, gate)
            except TemplateError as error:
                problems.append(f"{path}.query: {error}")
                continue
            try:
                provider = await self._provider(namespace, gate.prometheus)
            except KubeError as error:
                problems.append(f"{path}.auth: {error}")
                continue
            for field, text in (("query", query), ("compare.baseline", baseline)):
                if text is None:
                    continue
                try:
                    await self._blocking(provider.check_query, text)
                except InvalidQuery as error:
                    problems.append(f"spec.gates[{index}].{field}: Prometheus says: {error}")
                except ProviderError as error:
                    # Unreachable now is not a bad spec: the gate's onError decides later.
                    detail = {"gate": gate.name, "error": str(error)}
                    log.warning("gate query not checked", extra=detail)
        return problems

    async def measure(
        self, spec: MigrationSpec, namespace: str, migration: str, gates: list[Gate], now: datetime
    ) -> dict[str, Reading]:
        results = await asyncio.gather(
            *(self._measure_one(spec, namespace, migration, gate, now) for gate in gates)
        )
        return dict(zip((g.name for g in gates), results, strict=True))

    async def _measure_one(
        self, spec: MigrationSpec, namespace: str, migration: str, gate: Gate, now: datetime
    ) -> Reading:
        try:
            query, baseline = rendered_queries(spec, namespace, migration, gate)
            provider = await self._provider(namespace, gate.prometheus)
            if gate.compare is not None and gate.compare.test is CompareTest.mannwhitney:
                window = timedelta(seconds=parse_duration(gate.compare.window))
                step = max(window.total_seconds() / _RANGE_POINTS, 1.0)
                assert baseline is not None
                green, blue = await asyncio.gather(
                    self._blocking(provider.query_range, query, now - window, now, step),
                    self._blocking(provider.query_range, baseline, now - window, now, step),
                )
                return Reading.samples(tuple(green), tuple(blue))
            value = await self._blocking(provider.query, query)
            base = await self._blocking(provider.query, baseline) if baseline else None
            return Reading.of(value, base)
        except NoData as error:
            return Reading.no_data(str(error) or "query returned no data")
        except MultipleSeries as error:
            return Reading.error(f"query returned several series: {error}")
        except (ProviderError, KubeError, TemplateError) as error:
            return Reading.error(str(error))


def summarize(readings: Mapping[str, Reading]) -> dict[str, Any]:
    """Loggable form of readings (values only, never credentials)."""
    return {name: r.value if r.value is not None else r.kind.value for name, r in readings.items()}
