"""The metering gateway: OpenAI-compatible proxy that applies Limitador's limits and metrics.

Entry points: `create_app(config)` (ASGI app), `serve(config, host, port)`
(coroutine), `run(config, host, port)` (blocking), `build_server` (uvicorn
server object, e.g. to run in a thread and stop with `should_exit`).
"""

from maas_metrics.gateway.app import Gateway, create_app
from maas_metrics.gateway.server import build_server, run, serve

__all__ = ["Gateway", "build_server", "create_app", "run", "serve"]
