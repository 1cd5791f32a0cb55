"""A small synchronous client for Prometheus's HTTP query API with errors people can read."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from maas_metrics.config import mask_secrets


class PrometheusError(Exception):
    """Prometheus unreachable, or a query it refused; `str()` is one line."""


@dataclass(frozen=True, slots=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix seconds, value)


def _number(text: str) -> float:
    return float(text) if text not in ("NaN", "+Inf", "-Inf") else float(text.replace("+", ""))


class PrometheusAPI:
    def __init__(self, url: str, timeout: float = 60.0) -> None:
        self._client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        # What messages and pages show: any password in the URL masked.
        self.url = mask_secrets(url.rstrip("/"))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> PrometheusAPI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, params: dict[str, Any] | list[tuple[str, Any]]) -> Any:
        try:
            if isinstance(params, dict):
                # POST keeps long expressions clear of URL length limits, as Grafana does.
                response = self._client.post(path, data=params)
            else:
                response = self._client.get(path, params=params)
        except httpx.TimeoutException:
            raise PrometheusError(f"Prometheus at {self.url} did not answer in time") from None
        except httpx.HTTPError as error:
            raise PrometheusError(f"cannot reach Prometheus at {self.url}: {error}") from None
        try:
            body = response.json()
        except ValueError:
            raise PrometheusError(
                f"Prometheus at {self.url} answered HTTP {response.status_code} without JSON"
            ) from None
        if not isinstance(body, dict) or "status" not in body:
            raise PrometheusError(
                f"{self.url} answered HTTP {response.status_code} with JSON that is not a "
                "Prometheus API response (is it Prometheus, and the right port?)"
            )
        if body["status"] != "success":
            raise PrometheusError(f"Prometheus refused the query: {body.get('error', body)}")
        if "data" not in body:
            raise PrometheusError(f"{self.url} answered success without data")
        return body["data"]

    def ready(self) -> bool:
        try:
            return self._client.get("/-/ready").status_code == 200
        except httpx.HTTPError:
            return False

    def query(self, expr: str, time: float | None = None) -> list[Sample]:
        """An instant query; a scalar result comes back as one sample without labels."""
        params: dict[str, Any] = {"query": expr}
        if time is not None:
            params["time"] = f"{time:.3f}"
        data = self._get("/api/v1/query", params)
        with self._malformed("query"):
            if data["resultType"] == "scalar":
                return [Sample({}, _number(data["result"][1]))]
            if data["resultType"] != "vector":
                raise PrometheusError(f"expected an instant vector, got a {data['resultType']}")
            return [Sample(dict(r["metric"]), _number(r["value"][1])) for r in data["result"]]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        data = self._get(
            "/api/v1/query_range",
            {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"},
        )
        with self._malformed("query_range"):
            return [
                Series(dict(r["metric"]), [(float(t), _number(v)) for t, v in r["values"]])
                for r in data["result"]
            ]

    def label_values(self, label: str, match: list[str] | None = None) -> list[str]:
        params = [("match[]", m) for m in match or []]
        values = self._get(f"/api/v1/label/{label}/values", params)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise PrometheusError(f"{self.url} answered label values that are not a list of names")
        return sorted(values)

    @contextlib.contextmanager
    def _malformed(self, what: str) -> Iterator[None]:
        """A result without the shape the Prometheus API documents -> one clear PrometheusError."""
        try:
            yield
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            raise PrometheusError(
                f"{self.url} answered a {what} result Prometheus would not send"
            ) from None


def finite(value: float) -> float:
    """NaN (e.g. 0/0 success rate with no calls) as 0 for sums; callers decide how to show it."""
    return 0.0 if math.isnan(value) else value
