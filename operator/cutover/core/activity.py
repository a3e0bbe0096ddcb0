"""When a Migration needs the operator at all, and when a new run may start.

Both questions are asked of the same three facts (the phase, which spec generation the status
has seen, and a pending request), so they are answered here once: the Kopf layer uses
``needs_attention`` to decide whether a Migration gets a daemon, the reconciler uses
``may_start`` to decide whether to run preflight checks before ``decide`` is asked.
"""

from __future__ import annotations

from cutover.api import TERMINAL_PHASES, MigrationStatus, Phase
from cutover.core.observations import Request, RequestVerb


def may_start(status: MigrationStatus, generation: int, request: Request | None) -> bool:
    """A new run may begin: nothing ran yet, the spec changed, or a retry not yet handled."""
    if status.phase is Phase.pending:
        return True
    if status.observed_generation not in (None, generation):
        return True
    return (
        request is not None
        and request.verb is RequestVerb.retry
        and request.id != status.last_request
    )


def needs_attention(
    phase: Phase | None,
    observed_generation: int | None,
    generation: int,
    has_request: bool,
    window_open: bool = False,
    preview_left: bool = False,
) -> bool:
    """Not ended, in its rollback window, or asked to do something (any request, a new spec).

    A terminal Migration costs nothing until then. Any request counts, not only a retry: an
    unknown or already handled one must still be cleared by the reconciler. A Succeeded run
    whose rollback window is open still checks its gates and must retire blue at its end. A
    run whose preview Service is not deleted yet (core.preview) must delete it: the status
    saying it ended is written before the delete.
    """
    if phase not in TERMINAL_PHASES or (phase is Phase.succeeded and window_open):
        return True
    if preview_left:
        return True
    return has_request or observed_generation != generation
