"""`python -m cutover.sandbox serve ...`: run the sandbox cluster as a standalone process."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from cutover.sandbox.server import SandboxCluster


async def serve(args: argparse.Namespace) -> int:
    cluster = SandboxCluster(
        host=args.host, port=args.port, deployment_ready_delay=args.deployment_delay
    )
    await cluster.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        kubeconfig = cluster.write_kubeconfig(args.kubeconfig) if args.kubeconfig else None
        ready = json.dumps(
            {"url": cluster.url, "kubeconfig": str(kubeconfig) if kubeconfig else None}
        )
        if args.ready_file:
            # Written via a rename so that a poller never reads a partial file.
            target = Path(args.ready_file)
            tmp = target.with_name(target.name + ".tmp")
            tmp.write_text(ready + "\n")
            tmp.replace(target)
        sys.stdout.write(ready + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await cluster.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cutover.sandbox", description="Run the Cutover sandbox Kubernetes API."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("serve", help="serve the sandbox cluster until SIGTERM/SIGINT")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=0)
    srv.add_argument("--kubeconfig", default=None, help="where to write a kubeconfig")
    srv.add_argument(
        "--deployment-delay",
        type=float,
        default=0.2,
        help="seconds before Deployments report ready replicas",
    )
    srv.add_argument("--ready-file", default=None, help="also write the ready JSON here")
    srv.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr)
    return asyncio.run(serve(args))


if __name__ == "__main__":
    sys.exit(main())
