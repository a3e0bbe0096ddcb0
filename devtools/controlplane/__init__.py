"""The local Kubernetes control plane built from Go modules (see build.sh and versions.env)."""

from .cluster import ControlPlane, ControlPlaneError, bin_dir, ensure_built, read_versions

__all__ = ["ControlPlane", "ControlPlaneError", "bin_dir", "ensure_built", "read_versions"]
