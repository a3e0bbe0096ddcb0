"""A local Kubernetes API server for development and tests — a sandbox, never for production.

Built on kmock's `KubernetesEmulator` and served on 127.0.0.1, it is good enough for the real
`kopf`, the official `kubernetes` client and `kubectl --validate=false` to work against it:
resourceVersions and 409 conflicts, generations, the status subresource, selectors, watches,
merge/JSON/strategic-merge patches, finalizers, CRDs with discovery, and tiny Deployment/Job
controllers. It also records every write for assertions and can inject faults.

Known shortcuts (by design; this is a sandbox):

* no authentication, authorization, admission, schema validation or defaulting beyond the few
  defaults the controllers need; no garbage collection of owned objects;
* namespaces need not exist for objects to be created in them, and deleting a Namespace does
  not delete its contents;
* server-side apply is a plain (strategic for built-ins) merge of the applied object, without
  managed fields or ownership conflicts;
* list responses never paginate; a CRD serves each version as the same stored objects.

The operator never imports this package.
"""

from cutover.sandbox.faults import FaultInjector
from cutover.sandbox.server import SandboxCluster

__all__ = ["FaultInjector", "SandboxCluster"]
