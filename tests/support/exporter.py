"""Re-export of ``devtools.demo.exporter`` (the demo drives the same traffic exporter)."""

from __future__ import annotations

from devtools.demo.exporter import LATENCY_BUCKETS, DeploymentTraffic, TrafficExporter

__all__ = ["LATENCY_BUCKETS", "DeploymentTraffic", "TrafficExporter"]
