"""Cutover: zero-downtime blue-green migrations on Kubernetes."""

__version__ = "0.1.0"
