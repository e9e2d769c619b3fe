"""The `kobako` command."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from pathlib import Path

from kobako import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kobako", description="A cloud in a box.")
    parser.add_argument("--version", action="version", version=f"kobako {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the server (all services on one port)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=4566)
    serve.add_argument("--data-dir", type=Path, default=Path("./kobako-data"))
    serve.add_argument("--config", type=Path, default=None, help="TOML config file")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"])
    return parser


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    from kobako.config import Config
    from kobako.server.build import build_app
    from kobako.server.http import http_protocol

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    data_dir = args.data_dir.resolve()
    config = Config.load(data_dir, args.config)
    app = build_app(config)
    # What starting built (botocore's models above all) lives as long as the server:
    # frozen, it is left out of the collector's full passes, which otherwise walk it
    # every time (~70 ms each on a small VM, holding up every request meanwhile).
    gc.freeze()
    logging.getLogger("kobako").info(
        "kobako %s: data in %s, listening on http://%s:%d",
        __version__, data_dir, args.host, args.port,
    )
    # proxy_headers=False: kobako is not behind a proxy by default, and a client on this
    # host must not be able to choose the source IP that S3 policies (aws:SourceIp)
    # see by sending X-Forwarded-For (uvicorn trusts it from 127.0.0.1 by default).
    # server_header=False: no "server: uvicorn" on every answer (AWS names itself, not
    # its HTTP server), and one header fewer for uvicorn to check and write each time.
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", access_log=False,
        lifespan="on", loop="auto", http=http_protocol(), proxy_headers=False,
        server_header=False,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2
