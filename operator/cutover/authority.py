"""Acting with the author's rights: what a Migration makes the operator do, checked against what
its author (recorded by the admission webhook, cutover.admission) may do themselves.

The operator's own rights are broader than any one author's: without this, whoever may create a
Migration could have the operator create Jobs with any ServiceAccount, or read a Secret and send
it to a gate's address. Before a run starts (``Reconciler._preflight``), each such power is one
SubjectAccessReview for the author:

- a hook: ``create jobs`` in the namespace; its Job template's ``serviceAccountName``:
  ``impersonate serviceaccounts/<name>`` (running a Pod as that account is acting as it); a
  template in a ConfigMap: ``get configmaps/<name>``;
- a gate credential or CA (``prometheus.auth.*``, ``prometheus.ca``): ``get secrets/<name>``.
- a notifier's URL or signing key from a Secret (``spec.notify[].urlFrom``, ``signingKey``):
  ``get secrets/<name>``.

A denial fails the run before any traffic moves with a problem starting ``Forbidden:`` that names
the verb, the resource and the user. docs/security.md has the threat model.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from cutover import api, environment, providers
from cutover.admission import Author
from cutover.api import HookStage, MigrationSpec, SecretKeyRef
from cutover.core.transitions import Reason
from cutover.kube import Kube, KubeError

log = logging.getLogger("cutover.authority")


@dataclass(frozen=True)
class Need:
    """One thing the Migration asks the operator to do, as an access review's attributes."""

    verb: str
    group: str
    resource: str
    name: str | None
    field: str  # the spec path that asks for it

    def describe(self, namespace: str) -> str:
        kind = f"{self.resource}.{self.group}" if self.group else self.resource
        target = f"{kind}/{self.name}" if self.name else kind
        return f"{self.verb} {target} in namespace {namespace!r}"


def enforced(environ: Mapping[str, str]) -> bool:
    """Whether runs are checked against their author's rights. ``CUTOVER_AUTHOR_RIGHTS``
    (true/false) decides; unset, it follows admission: an author is only trustworthy when this
    operator's webhook recorded it. A value that is neither stops the start: this is a
    security setting, and a typo must not quietly pick a side."""
    chosen = environment.flag(environ, "CUTOVER_AUTHOR_RIGHTS")
    return bool(environ.get("CUTOVER_WEBHOOK_PORT")) if chosen is None else chosen


def _secret_needs(spec: MigrationSpec) -> list[Need]:
    needs = []
    for index, gate in enumerate(spec.gates):
        refs: list[tuple[str, SecretKeyRef | None]] = [("ca", getattr(gate.source, "ca", None))]
        refs += providers.source_for(gate).secret_refs(gate)
        for field, ref in refs:
            if ref is not None:
                path = f"spec.gates[{index}].{gate.provider}.{field}"
                needs.append(Need("get", "", "secrets", ref.name, path))
    # The operator would send to (or sign with) a Secret the author names: only one they may
    # read, or a notifier becomes a way to use Secrets they cannot see.
    for index, notifier in enumerate(spec.notify):
        for field, ref in notifier.secret_refs():
            path = f"spec.notify[{index}].{field}"
            needs.append(Need("get", "", "secrets", ref.name, path))
    return needs


def _service_account(template: Mapping[str, Any] | None) -> str | None:
    spec = (template or {}).get("spec") or {}
    pod = ((spec.get("template") or {}).get("spec")) or {}
    name = pod.get("serviceAccountName") or pod.get("serviceAccount")
    return str(name) if name else None


def needs(spec: MigrationSpec, templates: Mapping[str, Mapping[str, Any] | None]) -> list[Need]:
    """What running ``spec`` makes the operator do on the author's behalf, in spec order.
    ``templates`` gives the Job template of each hook that keeps it in a ConfigMap (None: not
    readable now; creating its Job fails later anyway, and the ConfigMap read is still checked)."""
    result: list[Need] = []
    for stage in HookStage:
        for index, hook in enumerate(spec.hooks.of(stage)):
            path = f"spec.hooks.{stage.value}[{index}]"
            result.append(Need("create", "batch", "jobs", None, path))
            template: Mapping[str, Any] | None = hook.job_template
            if hook.config_map_ref is not None:
                ref = hook.config_map_ref
                result.append(Need("get", "", "configmaps", ref.name, f"{path}.configMapRef"))
                template = templates.get(hook.name)
            account = _service_account(template)
            if account:
                field = (
                    f"{path}.jobTemplate.spec.template.spec.serviceAccountName"
                    if hook.config_map_ref is None
                    else f"{path}.configMapRef: serviceAccountName"
                )
                result.append(Need("impersonate", "", "serviceaccounts", account, field))
    for index, gate in enumerate(spec.gates):
        if gate.job is None:
            continue
        # A job gate creates a Job per check: the author must be able to create it too.
        path = f"spec.gates[{index}].job"
        result.append(Need("create", "batch", "jobs", None, path))
        account = _service_account(gate.job.job_template)
        if account:
            field = f"{path}.jobTemplate.spec.template.spec.serviceAccountName"
            result.append(Need("impersonate", "", "serviceaccounts", account, field))
    if spec.preview is not None:
        # The preview Service (core/preview.py) exposes green's pods under a name the author
        # chooses: only an author who could create that Service gets one made.
        result.append(Need("create", "", "services", None, "spec.preview"))
    return result + _secret_needs(spec)


class Rights:
    """The author's rights, asked of the API server for one Migration at a time."""

    def __init__(self, kube: Kube, *, enforce: bool) -> None:
        self._kube = kube
        self.enforce = enforce

    async def problems(
        self, spec: MigrationSpec, namespace: str, annotations: Mapping[str, str]
    ) -> list[str]:
        """One ``Forbidden: ...`` line per thing the author may not do (empty: all allowed)."""
        if not self.enforce:
            return []
        wanted = needs(spec, await self._templates(spec, namespace))
        if not wanted:
            return []  # nothing is done on anyone's behalf: no author needed
        author = Author.decode(annotations.get(api.AUTHOR_ANNOTATION))
        if author is None or not author.username:
            return [
                f"{Reason.forbidden}: no trusted author recorded (annotation"
                f" {api.AUTHOR_ANNOTATION} missing or unreadable), so hooks and gate Secrets"
                " cannot be checked against anyone's rights; apply the spec again with the"
                " admission webhook enabled to record its author"
            ]
        problems = []
        for need in wanted:
            try:
                allowed, reason = await self._kube.review(
                    author.username,
                    author.groups,
                    need.verb,
                    need.group,
                    need.resource,
                    namespace,
                    need.name,
                )
            except KubeError as error:
                # Unknown is not allowed: the run waits for a retry instead of acting blind.
                problems.append(
                    f"{Reason.forbidden}: cannot check whether user {author.username!r} may"
                    f" {need.describe(namespace)} ({need.field}): {error}"
                )
                continue
            if not allowed:
                log.info(
                    "author may not",
                    extra={
                        "namespace": namespace,
                        "user": author.username,
                        "verb": need.verb,
                        "resource": need.resource,
                        "field": need.field,
                    },
                )
                suffix = f": {reason}" if reason else ""
                problems.append(
                    f"{Reason.forbidden}: user {author.username!r} may not"
                    f" {need.describe(namespace)} ({need.field}){suffix}"
                )
        return problems

    async def _templates(
        self, spec: MigrationSpec, namespace: str
    ) -> dict[str, Mapping[str, Any] | None]:
        """Job templates kept in ConfigMaps, read with the operator's rights only to find the
        ServiceAccount they name (their content goes nowhere else)."""
        result: dict[str, Mapping[str, Any] | None] = {}
        for stage in HookStage:
            for hook in spec.hooks.of(stage):
                ref = hook.config_map_ref
                if ref is None:
                    continue
                try:
                    config_map = await self._kube.get("", "v1", "configmaps", namespace, ref.name)
                    text = ((config_map or {}).get("data") or {}).get(ref.key)
                    loaded = yaml.safe_load(text) if text else None
                except (KubeError, yaml.YAMLError):
                    loaded = None
                result[hook.name] = loaded if isinstance(loaded, dict) else None
        return result
