"""The models served and the TLS trust of their upstreams."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Annotated

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from maas_metrics.config.base import Text, _Strict


class Model(_Strict):
    """A model served through the gateway and the OpenAI-compatible base URL behind it.

    `ca_file` (PEM, relative to the working directory) replaces the system CAs
    for an `https://` upstream signed by a private CA.
    """

    name: Annotated[Text, Field(min_length=1)]
    upstream: Annotated[str, Field(pattern=r"^https?://")]
    ca_file: Path | None = None

    @field_validator("upstream")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @field_validator("ca_file")
    @classmethod
    def _loadable_ca(cls, value: Path | None) -> Path | None:
        if value is not None:
            tls_context(value)  # the gateway builds the same context: fail here, not there
        return value

    @model_validator(mode="after")
    def _ca_needs_https(self) -> Model:
        if self.ca_file is not None and not self.upstream.startswith("https://"):
            raise ValueError("ca_file is only used with an https:// upstream")
        return self


def tls_context(ca_file: Path) -> ssl.SSLContext:
    """A client TLS context trusting only the CAs in `ca_file`; ValueError saying why it cannot."""
    try:
        return ssl.create_default_context(cafile=str(ca_file))
    except ssl.SSLError:  # before OSError: it is one
        raise ValueError(f"CA file {str(ca_file)!r} holds no PEM certificate") from None
    except FileNotFoundError:
        raise ValueError(f"CA file {str(ca_file)!r} does not exist") from None
    except OSError as error:
        raise ValueError(f"cannot read CA file {str(ca_file)!r}: {error.strerror}") from None
