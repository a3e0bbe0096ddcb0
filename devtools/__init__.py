"""Developer tooling that never ships: the local control plane and the demo."""
