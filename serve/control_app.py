"""selfheal's Ray Serve application: the control API as the ingress deployment.

Deployed by ``selfheal up``, or the Serve way on a cluster that runs selfheal's actors::

    serve run serve.control_app:app_builder config=selfheal.toml
    serve deploy serve/serve_config.yaml

The FastAPI app is built on the replica (Serve's ASGI builder), so each replica opens its
own store connections; replicas hold no state of their own (reads come from the stores), so
any number of them answer alike.
"""

from __future__ import annotations

from typing import Any

from ray import serve

from actors.settings import Settings, load_settings

APP_NAME = "selfheal"


def control_api(settings: Settings, num_replicas: int | None = None) -> Any:
    """The bound application for ``settings`` (with its Redis URL filled in), on
    ``num_replicas`` replicas (default: the ``api_replicas`` setting)."""

    def build() -> Any:
        from actors.control import ControlBackend  # noqa: PLC0415 - on the replica

        from .control_api import build_app  # noqa: PLC0415

        return build_app(ControlBackend(settings),
                         cors_origins=tuple(settings.api_cors_origins),
                         token_cache_s=settings.api_token_cache_s)

    deployment = serve.deployment(
        name="ControlAPI", num_replicas=num_replicas or settings.api_replicas,
        ray_actor_options={"num_cpus": 0},
        health_check_period_s=5)(serve.ingress(build)())
    return deployment.bind()


def app_builder(args: dict[str, str]) -> Any:
    """For ``serve run`` and ``serve deploy``: ``config`` names a settings file. The stores
    are prepared and the actors started as ``selfheal up`` does."""
    from .service import prepare  # noqa: PLC0415

    settings = prepare(load_settings(args.get("config")))
    return control_api(settings, int(args["replicas"]) if "replicas" in args else None)
