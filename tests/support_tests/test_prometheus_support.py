"""The test-support Prometheus + exporter, exercised through PrometheusProvider."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from cutover.core.promql import render_query
from cutover.providers import InvalidQuery, NoData, PrometheusProvider, ProviderError
from tests.support.exporter import TrafficExporter
from tests.support.prometheus import PrometheusServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

RATIO = render_query(
    'sum(rate(http_requests_total{deployment="{{d}}",code=~"5.."}[10s]))'
    ' / sum(rate(http_requests_total{deployment="{{d}}"}[10s]))',
    {"d": "green"},
)


def poll(fn: Callable[[], bool], timeout: float, interval: float = 0.1) -> float:
    """Call ``fn`` until it returns True; return the seconds it took."""
    started = time.monotonic()
    while True:
        try:
            if fn():
                return time.monotonic() - started
        except (NoData, ProviderError):
            pass
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def test_error_ratio_outage_and_recovery(
    traffic_exporter: TrafficExporter,
    prometheus: PrometheusServer,
    prometheus_provider: PrometheusProvider,
    record_property: Callable[[str, object], None],
) -> None:
    traffic_exporter.set("green", rps=100.0, error_ratio=0.2)
    prometheus.wait_for_series(RATIO, timeout=30)
    # a full 10s window of the new traffic
    poll(lambda: abs(prometheus_provider.query(RATIO) - 0.2) < 0.02, timeout=30)
    time.sleep(11)
    assert prometheus_provider.query(RATIO) == pytest.approx(0.2, abs=0.02)
    end = datetime.now(UTC)
    values = prometheus_provider.query_range(RATIO, end - timedelta(seconds=8), end, 1.0)
    assert len(values) >= 8
    assert all(v == pytest.approx(0.2, abs=0.03) for v in values)

    # How long until a change of error ratio shows in the 10s rate query?
    traffic_exporter.set("green", rps=100.0, error_ratio=0.6)
    changed = traffic_exporter.error_ratio_changed_at("green")
    assert changed is not None
    first_move = poll(lambda: prometheus_provider.query(RATIO) > 0.25, timeout=30)
    halfway = poll(lambda: prometheus_provider.query(RATIO) > 0.4, timeout=30)
    poll(lambda: prometheus_provider.query(RATIO) > 0.58, timeout=30)
    settled_at = time.monotonic()
    figures = {
        "first_move_s": first_move,
        "halfway_s": first_move + halfway,
        "settled_s": settled_at - changed[0],
    }
    for name, value in figures.items():
        record_property(f"ratio_change_{name}", round(value, 2))
    # The figures are measurements (recorded above), not claims: the polls' time-outs only
    # bound the wait. The claim is the outcome: the 10s rate followed the change all the way.
    print("\nerror ratio 0.2 -> 0.6 seen after", {k: round(v, 2) for k, v in figures.items()})
    # A range query's last point lies up to a step before its end: let a settled one be in it.
    time.sleep(2.5)
    before_change = datetime.fromtimestamp(changed[1] - 3, UTC)
    moved = prometheus_provider.query_range(RATIO, before_change, datetime.now(UTC), 1.0)
    assert moved[0] == pytest.approx(0.2, abs=0.03), moved
    assert max(moved) == pytest.approx(0.6, abs=0.05), moved
    # Rising steadily: no dip back towards the old ratio on the way (scrape jitter aside).
    assert all(later >= earlier - 0.03 for earlier, later in itertools.pairwise(moved)), moved

    # Outage: the provider raises ProviderError (connection refused) with no retry (the
    # provider's unit tests count the connection attempts).
    stop_started = time.monotonic()
    prometheus.stop()
    stop_took = time.monotonic() - stop_started
    with pytest.raises(ProviderError) as info:
        prometheus_provider.query(RATIO)
    assert info.value.error_type == "connection"
    with pytest.raises(ProviderError):
        prometheus_provider.check_query(RATIO)
    time.sleep(12)  # longer than the 10s rate window: no samples left in it

    # Recovery: same port and data dir; history survives the restart.
    restart_started = time.monotonic()
    prometheus.start()
    ready = time.monotonic() - restart_started
    with pytest.raises(NoData):  # the window holds no sample yet
        prometheus_provider.query(RATIO)
    recovered = ready + poll(
        lambda: prometheus_provider.query(RATIO) == pytest.approx(0.6, abs=0.05), timeout=45
    )
    print(
        f"outage: SIGTERM stop took {stop_took:.2f}s; restart ready after {ready:.2f}s; "
        f"ratio query back near 0.6 after {recovered:.2f}s"
    )
    record_property("stop_s", round(stop_took, 2))
    record_property("restart_ready_s", round(ready, 2))
    record_property("restart_query_ok_s", round(recovered, 2))
    end = datetime.now(UTC)
    history = prometheus_provider.query_range(RATIO, end - timedelta(seconds=60), end, 1.0)
    assert any(v == pytest.approx(0.2, abs=0.03) for v in history)  # pre-outage data kept
    assert prometheus_provider.query("count(http_requests_total)") >= 2


def test_check_query_against_real_prometheus(prometheus_provider: PrometheusProvider) -> None:
    prometheus_provider.check_query(RATIO)
    prometheus_provider.check_query('up{job="none"}')  # valid, no data
    prometheus_provider.check_query("http_requests_total")  # valid, several series
    with pytest.raises(InvalidQuery, match="parse error"):
        prometheus_provider.check_query("sum(rate(http_requests_total[5m])")


TRICKY = [
    '"}) or vector(1) #',
    "back\\slash \\n not-a-newline",
    "quotes ' \" `",
    "new\nline\ttab\rcr",
    "ctrl \x01\x1b\x7f",
    "unicode é 日本 😀 \u2028 \u0085 \u200b",
    "{{green}}",
]


@pytest.mark.parametrize("value", TRICKY)
def test_escaped_values_round_trip_through_real_prometheus(
    prometheus: PrometheusServer, value: str
) -> None:
    """The real PromQL parser decodes a rendered literal back to the original value."""
    for template in (
        'label_replace(vector(1), "v", "{{v}}", "", "")',
        "label_replace(vector(1), 'v', '{{v}}', '', '')",
    ):
        result = prometheus.query(render_query(template, {"v": value}))
        assert result[0]["metric"]["v"] == value
