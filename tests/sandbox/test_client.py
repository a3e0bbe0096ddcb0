"""The official `kubernetes` client against a sandbox subprocess."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.sandbox.helpers import deployment, wait_for


def test_configmap_crud_and_metadata(core: Any) -> None:
    created = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "crud"}, "data": {"a": "1"}}
    )
    assert created.metadata.uid and created.metadata.creation_timestamp
    assert created.metadata.generation == 1
    rv1 = int(created.metadata.resource_version)

    patched = core.patch_namespaced_config_map("crud", "default", {"data": {"b": "2"}})
    assert patched.data == {"a": "1", "b": "2"}
    assert int(patched.metadata.resource_version) > rv1
    assert patched.metadata.generation == 2  # data is outside metadata/status

    patched.data = {"c": "3"}
    replaced = core.replace_namespaced_config_map("crud", "default", patched)
    assert replaced.data == {"c": "3"}

    listed = core.list_namespaced_config_map("default")
    assert "crud" in [item.metadata.name for item in listed.items]
    assert int(listed.metadata.resource_version) >= int(replaced.metadata.resource_version)

    core.delete_namespaced_config_map("crud", "default")
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("crud", "default")
    assert err.value.status == 404


def test_generate_name_and_duplicate(core: Any) -> None:
    a = core.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}})
    b = core.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}})
    assert a.metadata.name.startswith("gen-") and len(a.metadata.name) == 9
    assert a.metadata.name != b.metadata.name
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", {"metadata": {"name": a.metadata.name}})
    assert err.value.status == 409


def test_list_kind_and_api_version(apps: Any) -> None:
    raw = apps.list_namespaced_deployment("default", _preload_content=False)
    data = json.loads(raw.data)
    assert data["kind"] == "DeploymentList" and data["apiVersion"] == "apps/v1"
    assert data["metadata"]["resourceVersion"].isdigit()


def test_stale_resource_version_conflicts(core: Any) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "stale"}})
    stale = cm.metadata.resource_version
    core.patch_namespaced_config_map("stale", "default", {"data": {"x": "1"}})
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map(
            "stale", "default", {"metadata": {"resourceVersion": stale}, "data": {"x": "2"}}
        )
    assert err.value.status == 409
    assert '"kind": "Status"' in err.value.body and "Conflict" in err.value.body
    cm.data = {"y": "1"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("stale", "default", cm)
    assert err.value.status == 409


def test_strategic_merge_keeps_sidecar(apps: Any) -> None:
    apps.create_namespaced_deployment("default", deployment("smp"))
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "app",
                            "image": "nginx:1.27",
                            "env": [{"name": "MODE", "value": "green"}],
                        },
                    ]
                }
            }
        }
    }
    result = apps.patch_namespaced_deployment("smp", "default", patch)
    containers = {c.name: c for c in result.spec.template.spec.containers}
    assert set(containers) == {"app", "sidecar"}
    assert containers["app"].image == "nginx:1.27"
    assert containers["app"].ports[0].container_port == 80
    assert containers["sidecar"].image == "envoy:1.30"
    assert result.metadata.generation == 2

    # `$patch: delete` removes one named element.
    result = apps.patch_namespaced_deployment(
        "smp",
        "default",
        {"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}},
    )
    assert [c.name for c in result.spec.template.spec.containers] == ["app"]


def test_service_ports_merge_by_port(core: Any) -> None:
    core.create_namespaced_service(
        "default",
        {
            "metadata": {"name": "svc"},
            "spec": {
                "selector": {"app": "x"},
                "ports": [{"name": "http", "port": 80}, {"name": "metrics", "port": 9090}],
            },
        },
    )
    result = core.patch_namespaced_service(
        "svc", "default", {"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}
    )
    ports = {p.port: p for p in result.spec.ports}
    assert set(ports) == {80, 9090} and ports[80].target_port == 8080
    assert result.spec.cluster_ip


def test_label_and_field_selectors(core: Any) -> None:
    for name, labels in [
        ("sel-a", {"tier": "web", "env": "prod"}),
        ("sel-b", {"tier": "db", "env": "prod"}),
        ("sel-c", {"tier": "web"}),
    ]:
        core.create_namespaced_config_map("default", {"metadata": {"name": name, "labels": labels}})

    def names(**kwargs: str) -> set[str]:
        items = core.list_namespaced_config_map("default", **kwargs).items
        return {i.metadata.name for i in items if i.metadata.name.startswith("sel-")}

    assert names(label_selector="tier=web") == {"sel-a", "sel-c"}
    assert names(label_selector="tier==web,env=prod") == {"sel-a"}
    assert names(label_selector="tier!=web") == {"sel-b"}
    assert names(label_selector="tier in (db, cache)") == {"sel-b"}
    assert names(label_selector="tier notin (db)") == {"sel-a", "sel-c"}
    assert names(label_selector="env") == {"sel-a", "sel-b"}
    assert names(label_selector="!env") == {"sel-c"}
    assert names(field_selector="metadata.name=sel-b") == {"sel-b"}
    assert names(field_selector="metadata.namespace=default,metadata.name!=sel-b") == {
        "sel-a",
        "sel-c",
    }
    other = core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=nope")
    assert other.items == []


def test_watch_sees_added_modified_deleted(core: Any) -> None:
    events: list[tuple[str, str]] = []
    started = threading.Event()

    def consume() -> None:
        w = watch.Watch()
        started.set()
        for event in w.stream(
            core.list_namespaced_config_map,
            "default",
            label_selector="watched=yes",
            timeout_seconds=5,
        ):
            events.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                w.stop()

    thread = threading.Thread(target=consume)
    thread.start()
    started.wait()
    time.sleep(0.3)
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "w1", "labels": {"watched": "yes"}}}
    )
    core.patch_namespaced_config_map("w1", "default", {"data": {"k": "v"}})
    core.delete_namespaced_config_map("w1", "default")
    thread.join(timeout=10)
    assert events == [("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_finalizers_delay_deletion(core: Any) -> None:
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "fin", "finalizers": ["example.io/hold"]}}
    )
    core.delete_namespaced_config_map("fin", "default")
    obj = core.read_namespaced_config_map("fin", "default")
    assert obj.metadata.deletion_timestamp is not None
    core.patch_namespaced_config_map("fin", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("fin", "default")
    assert err.value.status == 404


def _available(apps: Any, name: str, replicas: int) -> Any:
    obj = apps.read_namespaced_deployment(name, "default")
    ok = obj.status and obj.status.available_replicas == obj.status.ready_replicas == replicas
    return obj if ok else None


def test_deployment_controller_reports_ready(apps: Any) -> None:
    created = apps.create_namespaced_deployment("default", deployment("ready", replicas=3))
    assert created.status is None or not created.status.ready_replicas
    started = time.monotonic()
    ready = wait_for(lambda: _available(apps, "ready", 3))
    assert time.monotonic() - started >= 0.1
    assert ready.status.available_replicas == ready.status.updated_replicas == 3
    assert ready.status.observed_generation == ready.metadata.generation == 1
    apps.patch_namespaced_deployment("ready", "default", {"spec": {"replicas": 5}})
    scaled = wait_for(lambda: _available(apps, "ready", 5))
    assert scaled.status.observed_generation == 2


def test_status_is_separate_from_main_object(apps: Any) -> None:
    apps.create_namespaced_deployment("default", deployment("split", replicas=1))
    wait_for(lambda: _available(apps, "split", 1))
    # A write to the main resource cannot change the status...
    result = apps.patch_namespaced_deployment("split", "default", {"status": {"readyReplicas": 42}})
    assert result.status.ready_replicas == 1
    # ...and a status write does not bump the generation.
    result = apps.patch_namespaced_deployment_status(
        "split", "default", {"status": {"readyReplicas": 0}}
    )
    assert result.status.ready_replicas == 0 and result.metadata.generation == 1


def test_dry_run_does_not_store(core: Any) -> None:
    result = core.create_namespaced_config_map(
        "default", {"metadata": {"name": "dry"}, "data": {"a": "1"}}, dry_run="All"
    )
    assert result.metadata.name == "dry" and result.data == {"a": "1"}
    with pytest.raises(ApiException):
        core.read_namespaced_config_map("dry", "default")


def test_request_log_records_writes(sandbox: Any, core: Any) -> None:
    since = max((e["seq"] for e in sandbox.requests()), default=0)
    core.create_namespaced_config_map("logged", {"metadata": {"name": "one"}})
    core.patch_namespaced_config_map("one", "logged", {"data": {"k": "v"}})
    core.read_namespaced_config_map("one", "logged")  # reads are counted, not logged
    entries = sandbox.requests(since=since)
    assert [
        (e["method"], e["resource"], e["namespace"], e["name"], e["code"]) for e in entries
    ] == [
        ("POST", "configmaps", "logged", None, 201),
        ("PATCH", "configmaps", "logged", "one", 200),
    ]
    assert entries[1]["body"] == {"data": {"k": "v"}}
    assert entries[1]["content_type"] == "application/strategic-merge-patch+json"
    assert entries[0]["seq"] < entries[1]["seq"] and entries[0]["monotonic"] > 0
    stats = sandbox.stats()
    counts = {
        (s["verb"], s["resource"], s["code"]): s["count"] for s in stats["by_verb_resource_code"]
    }
    assert counts[("get", "configmaps", 200)] >= 1


def test_namespace_object_is_optional(core: Any) -> None:
    core.create_namespaced_config_map("ghost-ns", {"metadata": {"name": "x"}})
    assert core.read_namespaced_config_map("x", "ghost-ns").metadata.namespace == "ghost-ns"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="real-ns")))
    assert core.read_namespace("real-ns").status.phase == "Active"
