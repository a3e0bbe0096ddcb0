"""All cluster access of the CLI: kubeconfig handling, Migration reads and request annotations.

Every failure leaves this module as a ``CliError`` carrying the one-line message and the exit
code, so the commands never show a client traceback.
"""

from __future__ import annotations

import copy
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cutover import __version__, api

EXIT_USER = 1
EXIT_UNREACHABLE = 4
# Short timeouts: a CLI that hangs on a dead cluster is worse than one that says so.
_CONNECT_TIMEOUT = 5.0
_READ_TIMEOUT = 20.0
# Spelled here: inside Cluster, ``list`` is its method.
Objects = list[dict[str, Any]]


class CliError(Exception):
    def __init__(self, message: str, code: int = EXIT_USER, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        # The API server's answer, when it gave one (403: RBAC; 410: a watch must start over).
        self.http_status = http_status


def request_id() -> str:
    """Unique enough for one person's requests: a UTC timestamp and a random suffix."""
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{secrets.token_hex(3)}"


def _default_kubeconfig() -> str:
    # Read at call time: the client library reads KUBECONFIG once, at import.
    return os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())


@dataclass
class Target:
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None


class Cluster:
    """A connection to the cluster a kubeconfig points at (like kubectl)."""

    def __init__(self, target: Target) -> None:
        from kubernetes import client, config
        from kubernetes.config.config_exception import ConfigException

        path = target.kubeconfig or _default_kubeconfig()
        configuration = client.Configuration()
        default_namespace = "default"
        try:
            if target.kubeconfig is None and _in_cluster(path):
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
                default_namespace = _incluster_namespace()
            else:
                if not all(Path(p).expanduser().exists() for p in path.split(os.pathsep) if p):
                    raise CliError(f"kubeconfig {path} does not exist")
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=path,
                    context=target.context,
                    client_configuration=configuration,
                    persist_config=False,
                )
                contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
                    config_file=path
                )
                chosen = (
                    next((c for c in contexts if c.get("name") == target.context), active)
                    if target.context
                    else active
                )
                default_namespace = (chosen or {}).get("context", {}).get("namespace") or "default"
        except ConfigException as error:
            raise CliError(f"bad kubeconfig {path}: {_first_line(error)}") from None
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise CliError(f"bad kubeconfig {path}: {_first_line(error)}") from None
        # One attempt: urllib3's default retries turn "connection refused" into a long wait.
        configuration.retries = 0
        self.namespace = target.namespace or default_namespace
        self._api_client = client.ApiClient(configuration)
        # A person's request (an annotation) is told apart from the operator's writes in
        # managedFields and audit logs, which name the writer after the User-Agent.
        self._api_client.user_agent = f"cutover-cli/{__version__}"
        self._custom = client.CustomObjectsApi(self._api_client)
        self.server = configuration.host

    def close(self) -> None:
        self._api_client.close()  # type: ignore[no-untyped-call]

    def warm_up(self) -> None:
        """Load the client's API modules for Events and Deployments now (seconds on a busy
        machine) rather than on the first read that needs them."""
        from kubernetes import client

        client.CoreV1Api(self._api_client)
        client.AppsV1Api(self._api_client)

    def in_namespace(self, namespace: str) -> Cluster:
        """The same connection for another namespace (never close it: the connection is shared)."""
        other = copy.copy(self)
        other.namespace = namespace
        return other

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _calling(self, what: str, name: str | None = None) -> Iterator[None]:
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        try:
            yield
        except ApiException as error:
            raise CliError(
                self._api_message(error, what, name), http_status=getattr(error, "status", None)
            ) from None
        except (HTTPError, OSError) as error:
            raise CliError(
                f"cannot reach the cluster at {self.server}: {_network_reason(error)}",
                EXIT_UNREACHABLE,
            ) from None

    def _api_message(self, error: Any, what: str, name: str | None) -> str:
        status = getattr(error, "status", None)
        if status == 404 and name is not None:
            return self._not_found(name)
        if status == 404:
            return (
                "the Migration resource is not known to this cluster: install the CRD"
                " (`cutover crd | kubectl apply -f -`)"
            )
        if status == 403:
            return f"forbidden: you may not {what} (RBAC): {_reason(error)}"
        if status == 401:
            return "unauthorized: the kubeconfig credentials were refused"
        return f"cannot {what}: {status} {_reason(error)}"

    def _not_found(self, name: str) -> str:
        return f'Migration "{name}" not found in namespace "{self.namespace}"'

    def _timeout(self) -> tuple[float, float]:
        return (_CONNECT_TIMEOUT, _READ_TIMEOUT)

    def get(self, name: str) -> dict[str, Any]:
        obj = self.find(name)
        if obj is None:
            raise CliError(self._not_found(name))
        return obj

    def find(self, name: str) -> dict[str, Any] | None:
        """The Migration, or None when it does not exist (yet)."""
        with self._calling(f"get migrations in namespace {self.namespace}", name):
            return self._custom_or_none(api.PLURAL, name, namespaced=True)

    def template(self, ref: api.GateTemplateRef) -> dict[str, Any] | None:
        """A GateTemplate (in this namespace) or ClusterGateTemplate; None when absent."""
        where = f" in namespace {self.namespace}" if ref.kind.namespaced else ""
        with self._calling(f"get {ref.kind.plural}{where}", None):
            return self._custom_or_none(ref.kind.plural, ref.name, namespaced=ref.kind.namespaced)

    def _custom_or_none(self, plural: str, name: str, *, namespaced: bool) -> dict[str, Any] | None:
        """One cutover.io object (in this namespace, or cluster-scoped); None on 404."""
        from kubernetes.client.exceptions import ApiException

        try:
            if namespaced:
                obj = self._custom.get_namespaced_custom_object(
                    api.GROUP,
                    api.VERSION,
                    self.namespace,
                    plural,
                    name,
                    _request_timeout=self._timeout(),
                )
            else:
                obj = self._custom.get_cluster_custom_object(
                    api.GROUP, api.VERSION, plural, name, _request_timeout=self._timeout()
                )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return _mapping(obj)

    def deployments(self, names: list[str]) -> dict[str, dict[str, Any] | None] | None:
        """Blue and green for the report's per-side tree: None when the user may not read
        Deployments (the report then says "not readable"), a missing one maps to None."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        apps = client.AppsV1Api(self._api_client)
        found: dict[str, dict[str, Any] | None] = {}
        for name in names:
            with self._calling(f"get deployments in namespace {self.namespace}", None):
                try:
                    obj = apps.read_namespaced_deployment(
                        name, self.namespace, _request_timeout=self._timeout()
                    )
                except ApiException as error:
                    if error.status in (401, 403):
                        return None
                    if error.status == 404:
                        found[name] = None
                        continue
                    raise
            found[name] = _mapping(
                self._api_client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
            )
        return found

    def list(self, all_namespaces: bool) -> list[dict[str, Any]]:
        return self.snapshot(all_namespaces)[0]

    def _where(self, all_namespaces: bool) -> str:
        return "all namespaces" if all_namespaces else f"namespace {self.namespace}"

    def snapshot(self, all_namespaces: bool) -> tuple[Objects, str]:
        """The Migrations and the list's resourceVersion, where a watch of them starts."""
        with self._calling(f"list migrations in {self._where(all_namespaces)}"):
            if all_namespaces:
                result = self._custom.list_cluster_custom_object(
                    api.GROUP, api.VERSION, api.PLURAL, _request_timeout=self._timeout()
                )
            else:
                result = self._custom.list_namespaced_custom_object(
                    api.GROUP,
                    api.VERSION,
                    self.namespace,
                    api.PLURAL,
                    _request_timeout=self._timeout(),
                )
        listed = _mapping(result)
        version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
        return [_mapping(item) for item in listed.get("items") or []], version

    def watch(
        self, all_namespaces: bool, resource_version: str, seconds: int = 30
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Changes to the Migrations after ``resource_version`` as (ADDED/MODIFIED/DELETED,
        object), for up to ``seconds``; a 410 (too old) means list again and start over."""
        from kubernetes import watch

        where = self._where(all_namespaces)
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        timeout = (_CONNECT_TIMEOUT, seconds + _READ_TIMEOUT)
        options: dict[str, Any] = {
            "resource_version": resource_version,
            "timeout_seconds": seconds,
            "allow_watch_bookmarks": False,
            "_request_timeout": timeout,
        }
        with self._calling(f"watch migrations in {where}"):
            if all_namespaces:
                events = stream.stream(  # type: ignore[no-untyped-call]
                    self._custom.list_cluster_custom_object,
                    api.GROUP,
                    api.VERSION,
                    api.PLURAL,
                    **options,
                )
            else:
                events = stream.stream(  # type: ignore[no-untyped-call]
                    self._custom.list_namespaced_custom_object,
                    api.GROUP,
                    api.VERSION,
                    self.namespace,
                    api.PLURAL,
                    **options,
                )
            try:
                for event in events:
                    yield str(event["type"]), _mapping(event["raw_object"])
            finally:
                stream.stop()  # type: ignore[no-untyped-call]

    def events(self, name: str) -> Objects | None:
        """The Events about Migration ``name``, oldest first; None when RBAC hides them."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        core = client.CoreV1Api(self._api_client)
        selector = f"involvedObject.kind={api.KIND},involvedObject.name={name}"
        with self._calling(f"list events in namespace {self.namespace}"):
            try:
                found = core.list_namespaced_event(
                    self.namespace, field_selector=selector, _request_timeout=self._timeout()
                )
            except ApiException as error:
                if error.status in (401, 403):
                    return None
                raise
        items = (
            _mapping(
                self._api_client.sanitize_for_serialization(found)  # type: ignore[no-untyped-call]
            ).get("items")
            or []
        )
        events = [_mapping(item) for item in items]
        return sorted(events, key=_event_time)

    def request(self, name: str, value: str) -> dict[str, Any]:
        """Set the request annotation with a JSON merge patch of metadata only.

        A merge patch touches nothing but this one key, and metadata is outside what a GitOps
        tool compares, so neither side undoes the other.
        """
        body = {"metadata": {"annotations": {api.REQUEST_ANNOTATION: value}}}
        with self._calling(f"patch migrations in namespace {self.namespace}", name):
            obj = self._custom.patch_namespaced_custom_object(
                api.GROUP,
                api.VERSION,
                self.namespace,
                api.PLURAL,
                name,
                body,
                _content_type="application/merge-patch+json",
                _request_timeout=self._timeout(),
            )
        return _mapping(obj)


def _mapping(value: object) -> dict[str, Any]:
    # The generated client types custom objects as ``object``; they are JSON objects.
    if not isinstance(value, dict):
        raise CliError(f"unexpected response from the API server: {type(value).__name__}")
    return value


def _event_time(event: dict[str, Any]) -> str:
    # ISO 8601 UTC strings sort in time order.
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def _in_cluster(path: str) -> bool:
    missing = not any(Path(p).expanduser().exists() for p in path.split(os.pathsep) if p)
    return missing and "KUBERNETES_SERVICE_HOST" in os.environ


def _incluster_namespace() -> str:
    try:
        return (
            Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip()
            or "default"
        )
    except OSError:
        return "default"


def _network_reason(error: BaseException) -> str:
    """The cause a person can act on ("connection refused"), not urllib3's retry dump."""
    text = str(getattr(error, "reason", None) or error)
    found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    if found:
        return found.group(1).strip().lower()
    tls = re.search(r"certificate verify failed: ([^(\"]+)", text)
    if tls:
        return f"TLS certificate refused: {tls.group(1).strip().rstrip('.')}"
    if "timed out" in text.lower():
        return "timed out"
    return _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def _reason(error: Any) -> str:
    import json

    body = getattr(error, "body", None)
    if body:
        try:
            message = json.loads(body).get("message")
        except (ValueError, AttributeError):
            message = None
        if message:
            return str(message)
    return str(getattr(error, "reason", "") or "")
