"""Test support: a real Prometheus server and a controllable traffic exporter.

Use the pytest fixtures with ``from tests.support.fixtures import *`` in a conftest.py.
"""

from .exporter import DeploymentTraffic, TrafficExporter
from .prometheus import PrometheusServer, find_prometheus, free_port

__all__ = [
    "DeploymentTraffic",
    "PrometheusServer",
    "TrafficExporter",
    "find_prometheus",
    "free_port",
]
