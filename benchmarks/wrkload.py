"""Drive HTTP load with Debian's `wrk` (apt-get install wrk) and read its results as numbers.

A generated Lua script sets the POST body and headers and, when the run is
done, prints one JSON line with the request count, errors and latency
percentiles (microseconds), so nothing is scraped from wrk's human output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

_DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    latency.mean))
end
"""


def require_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit("error: `wrk` is not installed; run: apt-get install -y wrk")
    return path


def lua_script(body: str, headers: dict[str, str], method: str = "POST") -> str:
    lines = [f"wrk.method = {json.dumps(method)}", f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    return "\n".join(lines) + "\n" + _DONE


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    non_2xx: int
    socket_errors: int
    p50_us: int
    p90_us: int
    p99_us: int
    max_us: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(url: str, script: str, connections: int, seconds: float, threads: int = 1) -> WrkResult:
    """One wrk run; `connections` concurrent keep-alive connections for `seconds`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        path = Path(handle.name)
    try:
        result = subprocess.run(
            [
                require_wrk(),
                f"-t{min(threads, connections)}",
                f"-c{connections}",
                f"-d{seconds:g}s",
                "--timeout",
                "10s",
                "-s",
                str(path),
                url,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        path.unlink()
    for line in result.stdout.splitlines():
        if line.startswith("WRKJSON "):
            d = json.loads(line.removeprefix("WRKJSON "))
            return WrkResult(
                requests=d["requests"],
                seconds=d["duration_us"] / 1e6,
                non_2xx=d["status"],
                socket_errors=d["connect"] + d["read"] + d["write"] + d["timeout"],
                p50_us=d["p50"],
                p90_us=d["p90"],
                p99_us=d["p99"],
                max_us=d["max"],
            )
    raise RuntimeError(f"wrk gave no result (exit {result.returncode}): {result.stderr.strip()}")
