"""The ``selfheal`` commands that run it as a service: ``up``, ``down``, ``status`` and
``token create`` (see docs/service.md). Like the rest of the command line, each imports what
it needs when it runs."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["add_service_commands", "fail"]


def fail(exc: Exception) -> int:
    """A command's error: one line on stderr, exit status 2 (every command uses this)."""
    print(f"selfheal: {exc}", file=sys.stderr)
    return 2


def _ray_token_auth() -> None:
    # Ray's token authentication stays on: the head node `ray start` makes requires it, and
    # a driver joining one sends its token (~/.ray/auth_token) only when told so before Ray
    # is first imported.
    os.environ.setdefault("RAY_AUTH_MODE", "token")


def _up(args: argparse.Namespace) -> int:
    _ray_token_auth()
    from actors.settings import SettingsError, load_settings
    from healing.errors import ConfigError
    from serve.service import ServiceError, up

    try:
        settings = load_settings(args.config)
        if args.catalogue:
            settings = settings.model_copy(update={"catalogue": args.catalogue})
        print("starting selfheal (Ray, the stores, the actors, the control API)...",
              file=sys.stderr, flush=True)
        state = up(settings)
    except (SettingsError, ConfigError, ServiceError) as exc:
        return fail(exc)
    print(f"selfheal is up: control API at {state['url']} (OpenAPI at {state['url']}/docs)")
    print(f"Ray cluster {state['ray_address']}; catalogue {state['catalogue']}")
    if state["admin_token_file"]:
        print(f"the first admin token is in {state['admin_token_file']} (mode 0600); make "
              "others with `selfheal token create --role operator --name NAME`")
    print("stop it with `selfheal down`")
    return 0


def _down(args: argparse.Namespace) -> int:
    _ray_token_auth()
    from actors.settings import SettingsError, load_settings
    from serve.service import ServiceError, down

    try:
        out = down(load_settings(args.config))
    except (SettingsError, ServiceError) as exc:
        return fail(exc)
    print(f"selfheal is down: stopped {', '.join(out['stopped']) or 'no actors'}"
          f"{'; Ray stopped' if out['ray_stopped'] else ''}")
    return 0


def _status(args: argparse.Namespace) -> int:
    _ray_token_auth()
    from actors.settings import SettingsError, load_settings
    from serve.service import ServiceError, status

    try:
        st = status(load_settings(args.config))
    except (SettingsError, ServiceError) as exc:
        return fail(exc)
    print(f"control API {st['url']}: {'answering' if st['api_answers'] else 'NOT answering'}"
          f" (Serve application: {st['serve'] or 'not deployed'})")
    print(f"Ray cluster {st['ray_address']}")
    for name, alive in st["actors"].items():
        print(f"  {name}: {'running' if alive else 'not running'}")
    healthy = st["api_answers"] and st["actors"]["orchestrator"]
    return 0 if healthy else 1


def _token_create(args: argparse.Namespace) -> int:
    from actors.settings import SettingsError, load_settings
    from healing.errors import ConfigError
    from serve.service import create_token

    try:
        secret, token = create_token(load_settings(args.config), args.role, args.name)
    except (SettingsError, ConfigError) as exc:
        return fail(exc)
    print(secret)
    print(f"token {token['id']} ({token['name']}, {token['role']}): shown once, stored only "
          "as a hash", file=sys.stderr)
    return 0


def add_service_commands(sub: Any) -> None:
    """Add ``up``, ``down``, ``status`` and ``token`` to the command line's subparsers."""
    upp = sub.add_parser("up", help="start selfheal as a service: Ray, actors, control API")
    upp.add_argument("--catalogue", metavar="DIR", help="the service catalogue (default: the "
                                                         "settings', else the embedded one)")
    upp.add_argument("--config", help="settings file (default: ./selfheal.toml if present)")
    upp.set_defaults(func=_up)
    dn = sub.add_parser("down", help="stop what `selfheal up` started")
    dn.add_argument("--config", help="settings file (default: ./selfheal.toml if present)")
    dn.set_defaults(func=_down)
    st = sub.add_parser("status", help="what is running; exit 1 if the API or orchestrator "
                                       "is down")
    st.add_argument("--config", help="settings file (default: ./selfheal.toml if present)")
    st.set_defaults(func=_status)
    tok = sub.add_parser("token", help="control API tokens")
    tok_sub = tok.add_subparsers(dest="token_command", required=True, metavar="COMMAND")
    tc = tok_sub.add_parser("create", help="make a bearer token; prints it once")
    tc.add_argument("--role", required=True, choices=["viewer", "operator", "auditor", "admin"])
    tc.add_argument("--name", required=True, help="who holds it (a handle)")
    tc.add_argument("--config", help="settings file (default: ./selfheal.toml if present)")
    tc.set_defaults(func=_token_create)
