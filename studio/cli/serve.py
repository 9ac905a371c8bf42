"""``studio serve``: an OpenAI-compatible API over the studio's models, on one GPU worker.

Prints the URL it listens on (stdout, one line, then flushed) and serves until Ctrl+C or SIGTERM,
which stop it gracefully: running jobs are cancelled and streams end. Binding to anything but a
loopback address needs an API key, so a laptop on café Wi-Fi never serves the whole room.
Exit status: 0 after a graceful stop, 1 when the server cannot start (a port in use), 2 on bad
input (a model that does not exist or is of another kind, no models, no key off loopback).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from studio.cli import UsageError, fail
from studio.cli.common import add_device_argument, load_cli_settings, quiet_libraries
from studio.server.limits import Limits

NAME = "serve"
HELP = "serve your models over an OpenAI-compatible HTTP API"
KEY_ENV = "STUDIO_API_KEY"
KEY_ENVS = (KEY_ENV, "STUDIO_SERVE_API_KEY")  # the second: the name earlier versions read
EXIT_STATUS = ("Exit status: 0 stopped with Ctrl+C or SIGTERM (running jobs are cancelled); 1 "
               "the server could not start (the port is taken, …); 2 bad input (an invalid "
               "value, a model that does not exist or is neither a chat nor a text-to-image "
               "model, no models to serve, another address than loopback without an API key).")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on; other than loopback needs --api-key")
    p.add_argument("--port", type=int, default=8000, help="port; 0 picks a free one")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY'; visible in 'ps': prefer "
                        f"--api-key-file or ${KEY_ENV}")
    p.add_argument("--api-key-file", type=Path, default=None, metavar="FILE",
                   help=f"read the API key from the first line of FILE (or set ${KEY_ENV})")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="also answer requests whose Host header is NAME (repeatable; by default "
                        "only localhost, 127.0.0.1, ::1 and the --host address: this refuses "
                        "DNS-rebinding pages)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="let web pages of ORIGIN (e.g. https://app.example) call the API, with "
                        "CORS headers (repeatable; default: none, CORS off)")
    p.add_argument("--max-prompt-tokens", type=int, default=Limits.max_prompt_tokens,
                   metavar="N", help="refuse longer prompts with a 400 before they are queued "
                                     f"(default {Limits.max_prompt_tokens:,})")
    p.add_argument("--max-pixel-steps", type=int, default=Limits.max_pixel_steps, metavar="N",
                   help="refuse image requests whose width × height × steps × n is over N "
                        f"(default {Limits.max_pixel_steps:,} = 1024×1024, 100 steps, 4 "
                        "images)")
    p.add_argument("--model", action="append", default=[], metavar="MODEL",
                   help="a model to serve (repeat for more): its name as 'studio models list' "
                        "prints it, a folder, a repo id in the Hugging Face cache, or "
                        "openai:BASE_URL#MODEL (default: every chat and image model in the "
                        "library)")
    p.add_argument("--collections", action="store_true",
                   help="let chat requests answer from your named document collections (their "
                        "'studio_collection' field; GET /v1/collections lists them): anyone who "
                        "can use this server can then read passages of those documents")
    add_device_argument(p)
    p.add_argument("--verbose", action="store_true", help="log every request on stderr")


def _limits(args: argparse.Namespace) -> Limits:
    for flag, value in (("--max-prompt-tokens", args.max_prompt_tokens),
                        ("--max-pixel-steps", args.max_pixel_steps)):
        if value < 1:
            raise UsageError(f"{flag} must be a positive whole number, not {value}")
    return Limits(max_prompt_tokens=args.max_prompt_tokens,
                  max_pixel_steps=args.max_pixel_steps)


def _hosts(names: list[str]) -> tuple[str, ...]:
    from studio.server.guard import host_name

    for name in names:
        if not host_name(name) or any(c in name for c in "/ ?#@"):
            raise UsageError(f"--allow-host {name!r} is not a host name: give a name such as "
                             "studio.lan or an address such as 192.168.1.5")
    return tuple(names)


def _origins(origins: list[str]) -> tuple[str, ...]:
    from urllib.parse import urlsplit

    for origin in origins:
        if origin == "*":
            continue
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname \
                or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise UsageError(f"--cors-origin {origin!r} is not an origin: give scheme and host "
                             "(and port), e.g. https://app.example or http://localhost:3000, or "
                             "* for any site")
    return tuple(origins)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    from studio.cli.common import read_secret
    from studio.core.jobs import UserFacingError

    args.api_key = read_secret(args.api_key, args.api_key_file, KEY_ENVS, "--api-key") or None
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {args.port}")
    options = {"limits": _limits(args), "allow_hosts": _hosts(args.allow_host),
               "cors_origins": _origins(args.cors_origin),
               "access_log": args.verbose}
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(message)s", stream=sys.stderr)
    # Nobody sees previews over HTTP; a missing device fails the first job, not the start.
    settings, paths = load_cli_settings(args, device_check=False)
    if args.collections:
        from studio.server.documents import ServedDocuments

        options["documents"] = ServedDocuments(paths.database, paths.models_dir)

    from studio.server.app import is_loopback, make_server
    from studio.server.catalog import build_catalog

    if not args.api_key and not is_loopback(args.host):
        return fail(f"refusing to serve on {args.host} without an API key: anyone who can reach "
                    "this machine could use your models. Add --api-key-file FILE (or set "
                    f"{KEY_ENV}), or serve on 127.0.0.1.", 2)
    try:
        catalog = build_catalog(args.model, settings, paths)
    except UserFacingError as exc:
        raise UsageError(str(exc)) from exc
    if not catalog.models:
        raise UsageError("no models to serve: name one with --model, or add chat or image "
                         f"models to {paths.models_dir}")
    if not args.verbose:
        quiet_libraries()

    from studio.cli.common import cli_engine

    # The services (and torch) load on the worker at the first request, so the URL is printed
    # within a second; the models then stay loaded between requests.
    engine = cli_engine(settings, paths)
    try:
        server = make_server(args.host, args.port, engine, catalog, args.api_key, **options)
    except OSError as exc:
        engine.shutdown(wait=False)
        return fail(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", 1)
    # SIGTERM (a service manager, a test) stops the server as Ctrl+C does, from the moment the
    # URL is printed: a stop that arrives while the model list is still being printed is a clean
    # stop too, not an interruption.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        print(f"Serving {len(catalog.models)} model(s) on {server.url}", flush=True)
        for model in catalog.models:
            print(f"  {model.kind:8} {model.id}", file=sys.stderr, flush=True)
        print("Press Ctrl+C to stop.", file=sys.stderr, flush=True)
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        print("studio: stopping…", file=sys.stderr, flush=True)
    finally:
        server.server_close()
        engine.shutdown(wait=True, timeout=10)
    return 0
