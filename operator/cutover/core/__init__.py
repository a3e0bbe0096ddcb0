"""The pure decision engine: no I/O, no clock, no Kubernetes or Kopf."""
