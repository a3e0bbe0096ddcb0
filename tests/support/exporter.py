"""Re-export: the traffic exporter now lives in ``cutover.demo.exporter`` (the demo uses it too)."""

from __future__ import annotations

from cutover.demo.exporter import LATENCY_BUCKETS, DeploymentTraffic, TrafficExporter

__all__ = ["LATENCY_BUCKETS", "DeploymentTraffic", "TrafficExporter"]
