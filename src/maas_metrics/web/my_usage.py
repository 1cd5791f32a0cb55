"""The "My usage" page (`/my-usage`): one user's own usage, quota and budget, by their API key.

Apart from the operator dashboard (which shows every user and needs no
key), this page shows only what the gateway's `GET /v1/usage` answers for
the key typed in. The key goes from the page's script to `/my-usage/api`
in an `Authorization` header, which this server forwards, header to header,
to the gateway: never in a URL, never in a cookie or browser storage, never
in a Dash callback (so never in a request body or in Dash's state), and the
server keeps nothing. The chart is Plotly, served from the installed
`plotly` package (no CDN).
"""

from __future__ import annotations

import functools
import json

import httpx
from flask import Flask, Response, request

PAGE_PATH = "/my-usage"
API_PATH = "/my-usage/api"
PLOTLY_PATH = "/my-usage/plotly.min.js"
_PARAMETERS = ("from", "to")
_NO_STORE = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}

_SCRIPT = r"""
(function () {
  const $ = (id) => document.getElementById(id);
  const money = (v) => "$" + Number(v).toFixed(4);
  const count = (v) => Number(v).toLocaleString("en-US");
  function set(field, text) {
    const cell = document.querySelector('[data-field="' + field + '"]');
    if (cell) cell.textContent = text;
  }
  function row(table, cells, fields) {
    const tr = document.createElement("tr");
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (fields && fields[i]) td.dataset.field = fields[i];
      tr.appendChild(td);
    });
    table.appendChild(tr);
  }
  function render(data) {
    $("who").textContent = data.user + " (tier " + data.tier + ")";
    const history = $("history-rows");
    history.replaceChildren();
    if (data.history) {
      for (const name of ["today", "month", "range"]) {
        const part = data.history[name];
        if (!part) continue;
        row(history, [name, count(part.tokens), money(part.cost), count(part.allowed_calls),
                      count(part.limited_calls), part.from + " to " + part.to],
            [null, name + "-tokens", name + "-cost", name + "-allowed", name + "-limited", null]);
      }
    }
    $("note").textContent = data.note || "";
    const quota = $("quota-rows");
    quota.replaceChildren();
    for (const q of data.quota || []) {
      row(quota, [q.policy, count(q.used), count(q.limit), count(q.remaining),
                  q.resets_at || "window not started"],
          [null, q.policy + "-used", q.policy + "-limit", q.policy + "-remaining",
           q.policy + "-resets"]);
    }
    const b = data.budget;
    $("budget").textContent = !b ? "No monthly budget." :
      (b.used === null ? "Budget: the counter store did not answer." :
       "Budget " + b.month + ": " + (b.unit === "usd" ? money(b.used) + " of " + money(b.limit)
         : count(b.used) + " of " + count(b.limit) + " tokens") + " (" + b.enforcement +
       "), renews at " + b.renews_at + (b.exhausted ? ": exhausted" : ""));
    const bars = [];
    const month = data.history && data.history.month;
    if (month && Object.keys(month.by_model).length) {
      const models = Object.keys(month.by_model);
      bars.push({type: "bar", name: "tokens this month", x: models,
                 y: models.map((m) => month.by_model[m].tokens)});
    }
    for (const q of data.quota || []) {
      bars.push({type: "bar", name: q.policy + " used in window", x: [q.policy + " quota"],
                 y: [q.used], xaxis: "x2", yaxis: "y2"});
    }
    Plotly.react("chart", bars, {
      height: 320, margin: {t: 30, l: 60, r: 20, b: 40}, barmode: "group",
      grid: {rows: 1, columns: 2, pattern: "independent"},
      title: {text: "Tokens by model this month, and quota used", font: {size: 14}},
    }, {displayModeBar: false, responsive: true});
    $("result").hidden = false;
  }
  async function show() {
    const key = $("key").value.trim();
    $("result").hidden = true;  // never leave another key's numbers on screen
    $("status").textContent = "";
    if (!key) { $("status").textContent = "Enter your API key."; return; }
    const params = new URLSearchParams();
    if ($("from").value) params.set("from", $("from").value);
    if ($("to").value) params.set("to", $("to").value);
    const query = params.toString();
    $("status").textContent = "Loading…";
    let response, data;
    try {
      response = await fetch("API_PATH" + (query ? "?" + query : ""), {
        headers: {Authorization: "Bearer " + key}, cache: "no-store", credentials: "omit",
      });
      data = await response.json();
    } catch (error) {
      $("status").textContent = "The usage service did not answer.";
      return;
    }
    if (!response.ok) {
      $("result").hidden = true;
      $("status").textContent = (data.error && data.error.message) || ("HTTP " + response.status);
      return;
    }
    $("status").textContent = "";
    render(data);
  }
  $("show").addEventListener("click", show);
  $("key").addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); show(); } });
})();
""".replace("API_PATH", API_PATH)

_PAGE = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>My usage</title>
<script src="{PLOTLY_PATH}"></script>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; color: #1f2328; max-width: 60rem; }}
label {{ margin-right: 1rem; }}
input {{ padding: .3rem; }}
table {{ border-collapse: collapse; margin: .5rem 0 1rem; }}
td, th {{ border-bottom: 1px solid #d0d7de; padding: .3rem .8rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
#status {{ color: #cf222e; min-height: 1.5rem; }}
</style>
</head>
<body>
<h1>My usage</h1>
<p>Your API key is sent to the gateway in an <code>Authorization</code> header for this
look-up only: it never appears in the address bar and is never saved. Operators: the
dashboard of every user is <a href="/">here</a>.</p>
<div>
<label>API key <input id="key" type="password" autocomplete="off" spellcheck="false"
 size="40"></label>
<label>From <input id="from" type="date"></label>
<label>To <input id="to" type="date"></label>
<button id="show" type="button">Show my usage</button>
</div>
<div id="status" role="status"></div>
<section id="result" hidden>
<h2 id="who"></h2>
<table><thead><tr><th>Period</th><th>Tokens</th><th>Cost</th><th>Allowed calls</th>
<th>Limited calls</th><th>Range (UTC)</th></tr></thead><tbody id="history-rows"></tbody></table>
<p id="note"></p>
<table><thead><tr><th>Quota</th><th>Used</th><th>Limit</th><th>Remaining</th>
<th>Resets at (UTC)</th></tr></thead><tbody id="quota-rows"></tbody></table>
<p id="budget"></p>
<div id="chart"></div>
</section>
<script>{_SCRIPT}</script>
</body>
</html>
"""


@functools.lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs())


def _error(status: int, message: str) -> Response:
    body = {"error": {"message": message, "type": "gateway_error", "param": None, "code": None}}
    return Response(json.dumps(body), status, mimetype="application/json", headers=_NO_STORE)


def register_my_usage(server: Flask, gateway_url: str) -> None:
    """Add the page, its script's Plotly and the `/v1/usage` relay to the dashboard's server."""
    usage_url = gateway_url.rstrip("/") + "/v1/usage"

    def page() -> Response:
        return Response(_PAGE, mimetype="text/html", headers=_NO_STORE)

    def plotly_js() -> Response:
        return Response(
            _plotly_js(),
            mimetype="text/javascript",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    def relay() -> Response:
        authorization = request.headers.get("Authorization")
        if not authorization:
            return _error(401, "Missing API key: send it as 'Authorization: Bearer <key>'.")
        params = {k: v for k, v in request.args.items() if k in _PARAMETERS}
        try:
            answer = httpx.get(
                usage_url, headers={"Authorization": authorization}, params=params, timeout=60
            )
        except httpx.HTTPError:
            return _error(502, "The gateway did not answer; try again shortly.")
        return Response(
            answer.content,
            answer.status_code,
            mimetype="application/json",
            headers=_NO_STORE,
        )

    server.add_url_rule(PAGE_PATH, "my_usage_page", page, methods=["GET"])
    server.add_url_rule(PLOTLY_PATH, "my_usage_plotly", plotly_js, methods=["GET"])
    server.add_url_rule(API_PATH, "my_usage_api", relay, methods=["GET"])


def default_gateway_url(host: str, port: int) -> str:
    """The gateway's API URL from its config (a wildcard bind is reached on the loopback)."""
    reach = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{reach}]:{port}" if ":" in reach else f"http://{reach}:{port}"
