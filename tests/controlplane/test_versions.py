"""Which Kubernetes the local control plane builds and runs: the pin, unless
CUTOVER_KUBERNETES_VERSION names another release (docs/testing.md)."""

from __future__ import annotations

import pytest

from devtools.controlplane import ControlPlaneError, bin_dir, read_versions


def test_without_an_override_the_pin_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUTOVER_KUBERNETES_VERSION", raising=False)
    pinned = read_versions()["KUBERNETES_VERSION"]
    assert pinned.startswith("v1.")
    assert f"k8s-{pinned}-" in bin_dir().name


def test_an_override_names_another_release_with_binaries_of_its_own(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CUTOVER_KUBERNETES_VERSION", raising=False)
    pinned_dir = bin_dir()
    monkeypatch.setenv("CUTOVER_KUBERNETES_VERSION", "v1.36.3")
    assert read_versions()["KUBERNETES_VERSION"] == "v1.36.3"
    assert bin_dir() != pinned_dir and "k8s-v1.36.3-" in bin_dir().name
    # Only Kubernetes moves: etcd and kwok stay pinned.
    monkeypatch.delenv("CUTOVER_KUBERNETES_VERSION")
    pinned = read_versions()
    monkeypatch.setenv("CUTOVER_KUBERNETES_VERSION", "v1.36.3")
    assert read_versions()["ETCD_VERSION"] == pinned["ETCD_VERSION"]


@pytest.mark.parametrize("value", ["1.36.3", "v1.36", "latest", "v1.36.3; rm -rf /"])
def test_an_override_that_is_no_release_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CUTOVER_KUBERNETES_VERSION", value)
    with pytest.raises(ControlPlaneError, match="CUTOVER_KUBERNETES_VERSION"):
        read_versions()
