"""The LiteLLM proxy set up as the peer to compare with: same mock upstream, per-key limits on.

LiteLLM lives in its own virtualenv, outside the repository, so its many
dependencies never touch the project's:

    python3 -m venv /work/bench-venv-litellm
    /work/bench-venv-litellm/bin/pip install 'litellm[proxy]'

(`litellm[proxy]` resolved to 1.108.7 here: the `litellm-proxy` extra of newer
releases was not on the package index.) Point `--litellm` or `LITELLM_BIN`
elsewhere if it is installed in another place.

Per-key RPM/TPM limits normally live in LiteLLM's Postgres database (virtual
keys). To run without a database, as documented for custom auth, a small auth
module maps each bearer key to a `UserAPIKeyAuth` carrying `rpm_limit` and
`tpm_limit`; LiteLLM's own rate limiter (the parallel request limiter hook)
enforces them per key, in memory, or in Redis when
`general_settings.coordination_redis` names one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

DEFAULT_BIN = "/work/bench-venv-litellm/bin/litellm"
INSTALL = (
    "python3 -m venv /work/bench-venv-litellm && "
    "/work/bench-venv-litellm/bin/pip install 'litellm[proxy]'"
)

_AUTH_MODULE = '''"""Custom auth for the benchmark: bearer key -> user with per-key rpm/tpm limits."""
import json
from pathlib import Path

from fastapi import Request
from litellm.proxy._types import UserAPIKeyAuth

KEYS = json.loads((Path(__file__).parent / "bench_keys.json").read_text())


async def user_api_key_auth(request: Request, api_key: str) -> UserAPIKeyAuth:
    entry = KEYS.get(api_key)
    if entry is None:
        raise Exception("invalid api key")
    return UserAPIKeyAuth(
        api_key=api_key,
        user_id=entry["user"],
        rpm_limit=entry["rpm"],
        tpm_limit=entry["tpm"],
    )
'''


@dataclass(frozen=True)
class PeerKey:
    secret: str
    user: str
    rpm: int  # requests per minute (LiteLLM's window is fixed at one minute)
    tpm: int  # tokens per minute


def litellm_bin(explicit: str | None = None) -> str:
    path = explicit or os.environ.get("LITELLM_BIN") or DEFAULT_BIN
    if not Path(path).exists():
        raise SystemExit(f"error: LiteLLM not found at {path}; install it with: {INSTALL}")
    return path


def write_setup(
    workdir: Path,
    upstream: str,
    models: list[str],
    keys: list[PeerKey],
    redis_port: int | None = None,
) -> Path:
    """Write config.yaml, the custom auth module and its keys into `workdir`; return the config."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "bench_auth.py").write_text(_AUTH_MODULE)
    (workdir / "bench_keys.json").write_text(
        json.dumps({k.secret: {"user": k.user, "rpm": k.rpm, "tpm": k.tpm} for k in keys})
    )
    # Quiet uvicorn's access log, as the maas-metrics gateway writes none per request.
    (workdir / "log_config.json").write_text(
        json.dumps(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "loggers": {"uvicorn.access": {"level": "WARNING"}},
            }
        )
    )
    general: dict[str, object] = {
        # Required to boot; the benchmark's clients use the custom-auth keys, not this one.
        "master_key": "sk-bench-master-" + os.urandom(16).hex(),
        "custom_auth": "bench_auth.user_api_key_auth",
    }
    if redis_port is not None:
        general["coordination_redis"] = {"host": "127.0.0.1", "port": redis_port}
    config = {
        "model_list": [
            {
                "model_name": model,
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": upstream,
                    "api_key": "sk-upstream-unused",
                },
            }
            for model in models
        ],
        "general_settings": general,
        "litellm_settings": {"drop_params": True},
    }
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def argv(binary: str, config: Path, port: int) -> list[str]:
    return [
        binary,
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
        "--log_config",
        str(config.parent / "log_config.json"),
    ]
