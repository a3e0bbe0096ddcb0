"""``python -m devtools.controlplane up|down|build|bin`` -- what ``make cluster`` runs."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .cluster import ControlPlane, ControlPlaneError, ensure_built


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.controlplane")
    parser.add_argument("command", choices=["up", "down", "build", "bin"])
    parser.add_argument("--dir", default=".cluster", help="state, kubeconfig and logs (.cluster)")
    args = parser.parse_args(argv)
    root = Path(args.dir)
    if args.command in ("build", "bin"):
        print(ensure_built(quiet=args.command == "bin"))
        return 0
    if args.command == "down":
        if not (root / "state.json").exists():
            print(f"no control plane running in {root}")
            return 0
        ControlPlane.attach(root).stop()
        print(f"control plane in {root} stopped")
        return 0
    if (root / "state.json").exists():
        print(
            f"a control plane already runs in {root} (make cluster-down stops it)", file=sys.stderr
        )
        return 1
    started = time.monotonic()
    plane = ControlPlane(root, detach=True)
    try:
        plane.start()
    except ControlPlaneError as error:
        print(f"the control plane did not start: {error}", file=sys.stderr)
        return 1
    print(f"control plane ready in {time.monotonic() - started:.1f}s at {plane.server}")
    print(f"  export KUBECONFIG={Path(plane.kubeconfig).resolve()}")
    print(f"  logs: {plane.logs}/   stop: make cluster-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
