"""Serving the Dash app with a threaded WSGI server that stops cleanly on Ctrl-C and SIGTERM."""

from __future__ import annotations

import logging
import signal
from types import FrameType

from werkzeug.serving import make_server

from maas_metrics.config import Config
from maas_metrics.dashboard.catalogue import build_catalogue
from maas_metrics.web.app import create_app


def _interrupt(signum: int, frame: FrameType | None) -> None:
    del signum, frame
    raise KeyboardInterrupt


def serve_dashboard(
    config: Config,
    prometheus_url: str,
    host: str,
    port: int,
    *,
    scrape_interval_seconds: int = 15,
    recording_rules: bool = False,
) -> None:
    """Serve until Ctrl-C or SIGTERM (both end `serve_forever`, which closes the socket).

    `recording_rules`: panels read the `maas-metrics rules` series (fast at any user count).
    """
    catalogue = build_catalogue(config, recording_rules=recording_rules)
    app = create_app(
        config,
        prometheus_url,
        scrape_interval_seconds=scrape_interval_seconds,
        catalogue=catalogue,
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access-log line per request
    server = make_server(host, port, app.server, threaded=True)
    signal.signal(signal.SIGTERM, _interrupt)
    server.serve_forever()
