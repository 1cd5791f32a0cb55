"""The recording rules' series for bench_scale.py's history, written by the generator itself.

Why: evaluating the real rules over 24 h of 210,000 series with `promtool
tsdb create-blocks-from rules` takes Prometheus hours on this shared 2-core
machine (about 400 s per 2 h block and rule under load). The panels' query
cost depends on how many rule series and samples Prometheus reads, not on
who computed them, so for the speed figures the generator writes what the
rules record for its deterministic traffic: each minute's exact growth per
(namespace, user, tier, model) as a rule group evaluated 23 s past each
minute would (a counter reset counted exactly), the per-tier sums, the
hour samples, and per user all models' minutes, signed minutes, hours and
hours to date.
That the real rules record exactly these values is what the tests prove
against a real Prometheus (`tests/test_exact_counts.py`,
`tests/test_rules_reading.py`, `tests/test_rules_live_group.py`).

Per-user minutes are written for the whole history: panels by model and
the quota headroom read them (`dashboard.promql.Counters`). (Until
2026-12-01 they were written for the last 3 h only, when panel totals read
the hour level; the per-user panels' 24 h figures of that day's first runs
read 3 h of minutes and are marked so in BENCHMARKS.md.)
"""

from __future__ import annotations

import itertools
import subprocess
from collections import defaultdict
from pathlib import Path

import bench_dashboard_queries as dq
from maas_metrics.prometheus.process import find_binary
from maas_metrics.rules.recording import (
    all_models_hour_series,
    all_models_series,
    per_tier_series,
    per_user_hour_series,
    per_user_series,
    per_user_to_date_series,
    signed_series,
)

SYNTHETIC = "synthetic, every minute, all-models hours to date"  # the marker of a data dir holding these series
OFFSET = 23  # seconds past each minute at which "the group" is evaluated (not the scrape grid)


def _growth(values: list[int]) -> list[int]:
    """Per scrape, what the counter grew by since the one before (a reset counts its new value)."""
    out = [values[0]]
    out += [b - a if b >= a else b for a, b in itertools.pairwise(values)]
    return out


def to_date(minutes: list[int], minute_ends: list[int]) -> list[int]:
    """The hour-to-date sample of each minute: the minutes so far of its clock hour.

    Minute i (ending at the whole minute M, stamped M + OFFSET) is step M + 60,
    in the clock hour of M; its evaluation's hour-to-date holds that hour's
    steps up to its own (`rules.reading.hour_to_date_recorded`).
    """
    out: list[int] = []
    for i, (value, end) in enumerate(zip(minutes, minute_ends, strict=True)):
        same_hour = i > 0 and minute_ends[i - 1] // 3600 == end // 3600
        out.append(value + (out[-1] if same_hour else 0))
    return out


def write(data: dq.DataSet, path: Path) -> int:
    """Every rule series of `data` as OpenMetrics in `path`; returns the number of samples."""
    scrape = dq.SCRAPE
    per_minute = 60 // scrape
    traffic = dq.Traffic()
    times = list(range(data.start, data.end + 1, scrape))
    steps = len(times)
    restart = data.start + data.hours * 1800 + scrape
    reset = times.index(restart) if restart in times else None
    # minute i ends at data.start + 60 i (minute 0: the first scrape, a series born with it)
    minute_ends = [data.start + 60 * i for i in range(len(range(0, steps, per_minute)))]
    minute_stamps = [m + OFFSET for m in minute_ends]
    # the hour ending at H sums the minutes ending in [H - 1h, H - 1 min]
    hour_slices = [
        ((h - 3600 - data.start) // 60, h + OFFSET)
        for h in range(data.start + 3600, data.end + 1, 3600)
    ]
    tier_sums: dict[str, list[int]] = defaultdict(lambda: [0] * len(minute_ends))
    samples = 0
    with path.open("w", encoding="utf-8", buffering=1 << 22) as out:
        for user in range(data.users):
            tier = dq.tier_of(user)
            every_model: dict[tuple[str, str], list[int]] = {}
            for m, model in enumerate(dq.MODELS):
                pair = user * len(dq.MODELS) + m
                counts = list(traffic.steps(pair, 0, steps))
                kinds = {
                    ("authorized_calls", "maas/requests"): [c[0] for c in counts],
                    ("authorized_hits", "maas/requests"): [c[0] for c in counts],
                    ("authorized_calls", "maas/tokens"): [c[0] for c in counts],
                    ("authorized_hits", "maas/tokens"): [c[1] for c in counts],
                }
                if user % 10 == 3:
                    limited = [1 if c[0] >= 2 else 0 for c in counts]
                    kinds[("limited_calls", "maas/requests")] = limited
                    kinds[("limited_calls", "maas/tokens")] = limited
                for (counter, ns), increments in kinds.items():
                    values = list(itertools.accumulate(increments))
                    if reset is not None:  # the restart: 0 there (its step lost), then on from 0
                        base = values[reset]
                        values[reset:] = [v - base for v in values[reset:]]
                    growth = _growth(values)
                    # The minute ending at M (whole minute) holds the scrapes in (M - 60, M];
                    # its sample is stamped M + OFFSET and is minute step M + 60 for `reading`.
                    minutes = [growth[0]] + [
                        sum(growth[k - per_minute + 1 : k + 1])
                        for k in range(per_minute, steps, per_minute)
                    ]
                    labels = (
                        f'limitador_namespace="{ns}",model="{model}",tier="{tier}",'
                        f'user="user-{user:05d}"'
                    )
                    tier_key = f'limitador_namespace="{ns}",model="{model}",tier="{tier}"'
                    sums = tier_sums[f"{per_tier_series(counter)}{{{tier_key}}}"]
                    for i, v in enumerate(minutes):
                        sums[i] += v
                    name = per_user_series(counter)
                    lines = [
                        f"{name}{{{labels}}} {minutes[i]} {minute_stamps[i]}\n"
                        for i in range(len(minutes))
                    ]
                    # The hour ending at H: minute steps in (H - 1h, H], the minutes ending in
                    # [H - 1h, H - 1 min]; stamped at the evaluation in H's first minute.
                    name = per_user_hour_series(counter)
                    lines += [
                        f"{name}{{{labels}}} {sum(minutes[i : i + 60])} {stamp}\n"
                        for i, stamp in hour_slices
                    ]
                    out.write("".join(lines))
                    samples += len(lines)
                    every = every_model.setdefault((counter, ns), [0] * len(minutes))
                    every[:] = [a + b for a, b in zip(every, minutes, strict=True)]
            # All models of the user: the hours and the hours to date.
            for (counter, ns), minutes in every_model.items():
                labels = f'limitador_namespace="{ns}",tier="{tier}",user="user-{user:05d}"'
                name = all_models_hour_series(counter)
                lines = [
                    f"{name}{{{labels}}} {sum(minutes[i : i + 60])} {stamp}\n"
                    for i, stamp in hour_slices
                ]
                name = per_user_to_date_series(counter)
                lines += [
                    f"{name}{{{labels}}} {v} {t}\n"
                    for v, t in zip(to_date(minutes, minute_ends), minute_stamps, strict=True)
                ]
                name = all_models_series(counter)
                lines += [
                    f"{name}{{{labels}}} {v} {t}\n"
                    for v, t in zip(minutes, minute_stamps, strict=True)
                ]
                # signed by the clock hour of the step (M + 60 is in the hour of M): even +, odd -
                name = signed_series(counter)
                lines += [
                    f"{name}{{{labels}}} {v * (1 - 2 * (m // 3600 % 2))} {t}\n"
                    for v, m, t in zip(minutes, minute_ends, minute_stamps, strict=True)
                ]
                out.write("".join(lines))
                samples += len(lines)
        for series, sums in tier_sums.items():
            out.write(
                "".join(f"{series} {v} {t}\n" for v, t in zip(sums, minute_stamps, strict=True))
            )
            samples += len(sums)
        out.write("# EOF\n")
    return samples


def build(data: dq.DataSet, data_dir: Path) -> None:
    """Write the rule series and backfill them into `data_dir`'s TSDB (Prometheus stopped)."""
    marker = data_dir / "rules.ready"
    if marker.exists() and marker.read_text() == data.key() + SYNTHETIC:
        return
    path = data_dir / "rules.om"
    write(data, path)
    subprocess.run(
        [
            find_binary("promtool"),
            "tsdb",
            "create-blocks-from",
            "openmetrics",
            str(path),
            str(data_dir / "tsdb"),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    path.unlink()
    marker.write_text(data.key() + SYNTHETIC)
