"""`batchit serve`: run the HTTP trigger API until Ctrl-C (which exits 0 once the running build stopped).

Without `BATCHIT_API_TOKEN` anyone who can reach the port could start builds, so the server then
listens on a loopback address only; with it, every route but `/healthz` and `/openapi.json` needs
the token as a bearer credential.
"""

from __future__ import annotations

import argparse
import ipaddress
import os

from batchit.cli import project_root
from batchit.config import load_config
from batchit.errors import UsageError
from batchit.model import STATE_DIR
from batchit.operators.registry import OperatorRegistry
from batchit.serve.api import ApiServer
from batchit.serve.queue import TOKEN_VARIABLE, BuildQueue


def run(args: argparse.Namespace) -> int:
    """Serve the API for the project in the current directory; return 0 when stopped."""
    root = project_root()
    token = os.environ.get(TOKEN_VARIABLE) or None
    if token is None and not is_loopback(args.host):
        raise UsageError(
            f"serve listens on {args.host} only with a token: anyone reaching it could start builds",
            hint=f"set {TOKEN_VARIABLE} to a secret, or keep the default --host 127.0.0.1",
        )
    load_config(root, args.file, {}, OperatorRegistry.default())  # a broken config fails now, not per request
    queue = BuildQueue(root, args.file)
    try:
        server = ApiServer((args.host, args.port), queue, root / STATE_DIR / "runs", token)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            hint="pick another --port (0 takes a free one)",
        ) from exc
    host, port = str(server.server_address[0]), int(server.server_address[1])
    shown = f"[{host}]" if ":" in host else host
    auth = "bearer token required" if token else "no token: loopback only"
    print(f"batchit serve: listening on http://{shown}:{port} ({auth}); Ctrl-C to stop", flush=True)
    queue.start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        queue.stop()
    print("batchit serve: stopped", flush=True)
    return 0


def is_loopback(host: str) -> bool:
    """True for `localhost` and the loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
