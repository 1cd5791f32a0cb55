"""A known traffic history: the gateway's counters as OpenMetrics for backfill, and their truth.

`build_history(config, start=...)` simulates a few hours of MaaS traffic the
way the gateway meters it (request policy: calls and +1 hits in the request
namespace; token policy: a pre-check call with +0 hits, then +total tokens,
in one of two token namespaces) for users in every tier of `config`, with:

* several models and two token namespaces plus the request namespace;
* a gateway restart (every counter restarts from 0: a counter reset);
* a user (`mallory`) who is only ever limited;
* a user name with regex metacharacters (`eve.smith+1`);
* users for any extra tier of the config, so a fourth tier gets traffic too.

* bursts of requests before `bursts_after_seconds` and the end, so quota
  panels have users near their limits.

`History.openmetrics()` renders the samples (every `scrape_interval`
seconds, aligned to it) for `PrometheusProcess.backfill`; `History.total()`
and `History.totals_at()` compute the true increase over windows by adding
up the simulated events in plain Python, independently of any PromQL. With
samples on both edges of a window, Prometheus' `increase` over it must
equal `total` exactly.

`backfill_recording_rules_aligned()` loads the recording rules evaluated on
the scrape grid (exact, for tests); `backfill_recording_rules()` uses
`promtool tsdb create-blocks-from rules` as an operator would.

Typical use::

    history = build_history(config, start=(int(time.time()) // 3600 - 5) * 3600)
    prometheus = PrometheusProcess(tmp_path)
    prometheus.backfill(history.openmetrics())
    prometheus.start()
    truth = history.total("authorized_hits", t0, t1, by=("user",))
"""

from __future__ import annotations

import bisect
import itertools
import random
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import yaml

from maas_metrics.config import Config
from maas_metrics.prometheus import PrometheusAPI, PrometheusProcess
from maas_metrics.prometheus.process import find_binary
from maas_metrics.rules import recording
from maas_metrics.rules.recording import recording_groups
from maas_metrics.telemetry.exposition import escape_label_value

SCRAPE_INTERVAL = 15
SECOND_TOKEN_NAMESPACE = "tenant-b/tokens"
ONLY_LIMITED_USER = "mallory"
USER_NAMES = (
    "alice",
    "bob",
    "carol",
    "dave",
    "eve.smith+1",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
)

HITS = "authorized_hits"
CALLS = "authorized_calls"
LIMITED = "limited_calls"
PROMPT = "maas_prompt_tokens_total"
COMPLETION = "maas_completion_tokens_total"
COUNTERS = (HITS, CALLS, LIMITED, PROMPT, COMPLETION)

Labels = tuple[tuple[str, str], ...]
"""Label pairs sorted by name: a hashable series identity."""


def labels_of(**pairs: str) -> Labels:
    return tuple(sorted(pairs.items()))


@dataclass(frozen=True, slots=True)
class Event:
    """`amount` added to the counter `metric`{labels} at unix second `time`."""

    time: int
    metric: str
    labels: Labels
    amount: int


@dataclass(frozen=True, slots=True)
class Gauge:
    metric: str
    labels: Labels
    value: float


@dataclass
class History:
    config: Config
    start: int
    end: int
    restarts: tuple[int, ...]
    users: dict[str, str]
    """user -> tier"""
    request_namespace: str
    token_namespaces: tuple[str, ...]
    models: tuple[str, ...]
    events: list[Event] = field(default_factory=list)
    gauges: list[Gauge] = field(default_factory=list)
    scrape_interval: int = SCRAPE_INTERVAL
    lazy: bool = False
    """Expose series as a real Limitador does: born at their first value (no 0 before), gone
    at a restart and re-created at their next hit with the post-restart value."""

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.request_namespace, *self.token_namespaces)

    def sample_times(self) -> range:
        return range(self.start, self.end + 1, self.scrape_interval)

    def series(self) -> dict[tuple[str, Labels], list[Event]]:
        out: dict[tuple[str, Labels], list[Event]] = defaultdict(list)
        for event in self.events:
            out[(event.metric, event.labels)].append(event)
        for events in out.values():
            events.sort(key=lambda e: e.time)
        return dict(sorted(out.items()))

    def openmetrics(self) -> str:
        """Every series sampled every scrape interval from `start` (value 0) to `end`, `# EOF` last.

        A restart at R means samples after R count only events after R, as a
        restarted process does; no event falls in the scrape interval after R,
        so the first sample after a restart is 0 and the reset is visible.
        """
        lines: list[str] = []
        times = list(self.sample_times())
        for (metric, labels), events in self.series().items():
            text = _label_text(labels)
            index = 0
            value = 0
            restarts = list(self.restarts)
            exists = not self.lazy
            for t in times:
                while restarts and restarts[0] < t:
                    # Counters restart right after the sample at the restart time.
                    restart = restarts.pop(0)
                    while index < len(events) and events[index].time <= restart:
                        value += events[index].amount
                        index += 1
                    value = 0
                    exists = not self.lazy
                while index < len(events) and events[index].time <= t:
                    value += events[index].amount
                    index += 1
                    exists = True
                if exists:
                    lines.append(f"{metric}{text} {value} {t}\n")
        for gauge in self.gauges:
            text = _label_text(gauge.labels)
            lines.extend(f"{gauge.metric}{text} {gauge.value:g} {t}\n" for t in times)
        lines.append("# EOF\n")
        return "".join(lines)

    def total(
        self,
        metric: str,
        after: int,
        until: int,
        *,
        by: Iterable[str] = (),
        where: Callable[[Mapping[str, str]], bool] | None = None,
    ) -> dict[Labels, float]:
        """The true increase of `metric` in (after, until], summed by the labels `by`."""
        keys = tuple(by)
        out: dict[Labels, float] = defaultdict(float)
        for event in self.events:
            if event.metric != metric or not after < event.time <= until:
                continue
            labels = dict(event.labels)
            if where is not None and not where(labels):
                continue
            out[tuple((k, labels[k]) for k in sorted(keys))] += event.amount
        return dict(out)

    def totals_at(
        self,
        metric: str,
        windows: Sequence[tuple[int, int]],
        *,
        by: Iterable[str] = (),
        where: Callable[[Mapping[str, str]], bool] | None = None,
    ) -> list[dict[Labels, float]]:
        """`total` for many windows (after, until] at once (prefix sums; for range queries)."""
        keys = tuple(sorted(by))
        grouped: dict[Labels, list[Event]] = defaultdict(list)
        for event in self.events:
            if event.metric != metric:
                continue
            labels = dict(event.labels)
            if where is not None and not where(labels):
                continue
            grouped[tuple((k, labels[k]) for k in keys)].append(event)
        prepared = []
        for key, events in grouped.items():
            events.sort(key=lambda e: e.time)
            times = [e.time for e in events]
            sums = [0, *itertools.accumulate(e.amount for e in events)]
            prepared.append((key, times, sums))
        out: list[dict[Labels, float]] = []
        for after, until in windows:
            totals: dict[Labels, float] = {}
            for key, times, sums in prepared:
                amount = (
                    sums[bisect.bisect_right(times, until)]
                    - sums[bisect.bisect_right(times, after)]
                )
                if amount:
                    totals[key] = float(amount)
            out.append(totals)
        return out


def _label_text(labels: Labels) -> str:
    return "{" + ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels) + "}"


def _assign_users(config: Config) -> dict[str, str]:
    names = iter(USER_NAMES)
    users: dict[str, str] = {}
    for level, tier in enumerate(config.tiers_by_level()):
        count = 3 if level == 0 else 2
        for _ in range(count):
            name = next(names, None) or f"{tier.name}-user-{len(users)}"
            users[name] = tier.name
    return users


def build_history(
    config: Config,
    *,
    start: int,
    hours: float = 3.5,
    restart_after_seconds: int | None = 7650,
    bursts_after_seconds: tuple[int, ...] = (9000,),
    seed: int = 20240601,
    scrape_interval: int = SCRAPE_INTERVAL,
    lazy: bool = False,
    joiners: Sequence[tuple[str, int, int]] = (),
) -> History:
    """Simulated traffic from `start` (aligned to the scrape interval) for `hours`.

    `restart_after_seconds`: when the gateway restarts (None: never); it is
    rounded to a scrape time. `bursts_after_seconds`: besides the end, the
    times that a burst of requests by every user ends at (quota panels).
    `lazy`: series born at their first value and re-created after a restart
    (`History.lazy`). `joiners`: extra users of the lowest tier (name, first
    second, last second after `start`) whose traffic starts (and ends) inside
    the history; one whose first and last second are equal makes one request.
    """
    scrape = scrape_interval
    if start % scrape:
        raise ValueError("start must be aligned to the scrape interval")
    rng = random.Random(seed)
    end = start + int(hours * 3600) // scrape * scrape
    restarts: tuple[int, ...] = ()
    if restart_after_seconds is not None:
        restarts = (start + restart_after_seconds // scrape * scrape,)
    users = _assign_users(config)
    lowest = config.tiers_by_level()[0].name
    history = History(
        config=config,
        start=start,
        end=end,
        restarts=restarts,
        users={**users, ONLY_LIMITED_USER: lowest},
        request_namespace=config.namespaces.requests,
        token_namespaces=(config.namespaces.tokens, SECOND_TOKEN_NAMESPACE),
        models=tuple(m.name for m in config.models),
        scrape_interval=scrape,
        lazy=lazy,
    )

    def quiet(t: int) -> bool:
        return any(r < t <= r + scrape for r in restarts)

    def add(t: int, metric: str, amount: int, **labels: str) -> None:
        history.events.append(Event(t, metric, labels_of(**labels), amount))

    req_ns = history.request_namespace

    def request(
        t: int, user: str, tier_name: str, *, limited_share: float, burst: bool = False
    ) -> None:
        """One chat completion through both policies, as the gateway meters it."""
        level = config.tier(tier_name).level
        model = rng.choice(history.models[:2]) if rng.random() < 0.7 else rng.choice(history.models)
        token_ns = (
            history.token_namespaces[0]
            if burst or rng.random() < 0.75
            else history.token_namespaces[1]
        )
        usage = {"user": user, "tier": tier_name, "model": model}
        if rng.random() < limited_share:
            add(
                t,
                LIMITED,
                1,
                limitador_namespace=req_ns,
                limit_name=f"{tier_name}-requests",
                **usage,
            )
            return
        add(t, CALLS, 1, limitador_namespace=req_ns, **usage)
        add(t, HITS, 1, limitador_namespace=req_ns, **usage)
        if rng.random() < limited_share / 2:
            add(
                t,
                LIMITED,
                1,
                limitador_namespace=token_ns,
                limit_name=f"{tier_name}-tokens",
                **usage,
            )
            return
        add(t, CALLS, 1, limitador_namespace=token_ns, **usage)
        add(t, HITS, 0, limitador_namespace=token_ns, **usage)
        prompt = rng.randint(5, 120)
        completion = rng.randint(1, 200) * (1 + level)
        report = min(t + rng.randint(0, 3), end)
        if quiet(report):
            report = t
        add(report, HITS, prompt + completion, limitador_namespace=token_ns, **usage)
        add(report, PROMPT, prompt, limitador_namespace=token_ns, **usage)
        add(report, COMPLETION, completion, limitador_namespace=token_ns, **usage)

    for user, tier_name in sorted(users.items()):
        level = config.tier(tier_name).level
        per_minute = 0.6 + 0.5 * rng.random()
        limited_share = 0.25 if level == 0 else 0.08
        t = start + 1
        while True:
            t += max(1, int(rng.expovariate(per_minute / 60)))
            if t > end:
                break
            if not quiet(t):
                request(t, user, tier_name, limited_share=limited_share)

    lowest_tier = config.tiers_by_level()[0].name
    for name, first, last in joiners:
        history.users[name] = lowest_tier
        t = start + first
        while t <= min(start + last, end):
            if not quiet(t):
                request(t, name, lowest_tier, limited_share=0.25)
            t += max(1, int(rng.expovariate(1 / 60)))
            if first == last:
                break

    # Bursts of four requests per user in the 50 s before these times: users near their quotas.
    for burst_end in sorted({*(start + b for b in bursts_after_seconds), end}):
        for user, tier_name in sorted(users.items()):
            for k in range(4):
                request(burst_end - 50 + 12 * k, user, tier_name, limited_share=0.0, burst=True)

    # mallory: free tier, every request rejected by the request policy, on two models.
    t = start + 30
    while t <= end:
        if not quiet(t):
            model = history.models[int(t // 600) % 2]
            add(
                t,
                LIMITED,
                1,
                limitador_namespace=req_ns,
                limit_name=f"{lowest}-requests",
                user=ONLY_LIMITED_USER,
                tier=lowest,
                model=model,
            )
        t += 97

    history.gauges.append(Gauge("limitador_up", (), 1))
    history.gauges.append(Gauge("datastore_partitioned", (), 0))
    for tier in config.tiers_by_level():
        quotas = [(req_ns, "requests", tier.request_limit)]
        quotas += [(ns, "tokens", tier.token_limit) for ns in history.token_namespaces]
        for namespace, policy, limit in quotas:
            if limit is None:
                continue
            labels = labels_of(
                limitador_namespace=namespace,
                tier=tier.name,
                policy=policy,
                limit_name=f"{tier.name}-{policy}",
            )
            history.gauges.append(Gauge("maas_limit_max", labels, limit.max))
            history.gauges.append(Gauge("maas_limit_window_seconds", labels, limit.window_seconds))
    return history


def backfill_recording_rules_at(
    prometheus: PrometheusProcess, start: int, end: int, config: Config | None = None
) -> None:
    """Evaluate every recording rule at exactly `start`, `start + 60`, ... and load the results.

    A Prometheus server evaluates a group at a fixed, hash-based offset
    within its interval: choose `start` off the scrape grid to test that,
    or on it. `config`: whose schema's rules (the seed's without one).
    """
    backfill_rule_groups(prometheus, start, end, recording_groups(config))


def backfill_rule_groups(
    prometheus: PrometheusProcess, start: int, end: int, groups: Sequence[Mapping[str, Any]]
) -> None:
    """Evaluate rule groups every interval from `start` with the real engine and load the results.

    The expressions are the real rules', evaluated by the real server's engine
    (a range query: the same evaluation as the rule manager's instant query
    at each time), stored at their evaluation times. Rules that read another
    rule's output (the hour level reads the minute level) are evaluated in a
    later pass, once the earlier passes' samples are loaded.
    """
    rules = [(group, rule) for group in groups for rule in group["rules"]]
    group_of = {id(rule): group for group, rule in rules}
    ordered = recording.rule_passes([rule for _, rule in rules])  # the same objects, in passes
    passes = [[(group_of[id(rule)], rule) for rule in chosen] for chosen in ordered]
    for chosen in passes:
        if not chosen:
            continue
        lines: list[str] = []
        with PrometheusAPI(prometheus.url) as api:
            for group, rule in chosen:
                step = _seconds(str(group["interval"]))
                for series in api.query_range(str(rule["expr"]), start, end, step):
                    labels = {**series.labels, **cast(Mapping[str, str], rule.get("labels", {}))}
                    text = _label_text(tuple(sorted(labels.items())))
                    lines.extend(
                        f"{rule['record']}{text} {v!r} {t:.3f}\n" for t, v in series.points
                    )
        lines.append("# EOF\n")
        prometheus.stop()
        prometheus.backfill("".join(lines))
        prometheus.start()


def _seconds(interval: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    return int(interval[:-1]) * units[interval[-1]]


def backfill_recording_rules(prometheus: PrometheusProcess, start: int, end: int) -> None:
    """Evaluate the recording rules over [start, end] with promtool and load the blocks.

    promtool queries the running `prometheus` for its inputs; the server
    is then restarted so that it picks the new blocks up, once per pass of
    `backfill_passes`. Evaluations happen at `start`, `start + 60`, ... (the
    group interval).
    """
    for number, rules in enumerate(recording.backfill_passes()):
        group = {"name": recording.GROUP_NAME, "interval": recording.INTERVAL, "rules": rules}
        path = prometheus.data_dir / f"recording-rules-{number}.yml"
        path.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
        output = prometheus.data_dir / f"rule-blocks-{number}"
        result = subprocess.run(
            [
                find_binary("promtool"),
                "tsdb",
                "create-blocks-from",
                "rules",
                "--quiet",
                f"--start={start}",
                f"--end={end}",
                f"--url={prometheus.url}",
                f"--output-dir={output}",
                str(path),
            ],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(
                "promtool rule backfill failed: " + (result.stderr.strip() or result.stdout.strip())
            )
        prometheus.stop()
        for block in sorted(output.iterdir()):
            if block.is_dir():
                shutil.move(str(block), str(prometheus.data_dir / "tsdb" / block.name))
        prometheus.start()


backfill_recording_rules_aligned = backfill_recording_rules_at
"""Kept for tests that evaluate on the scrape grid (pass a `start` on it)."""
