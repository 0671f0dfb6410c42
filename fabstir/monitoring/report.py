"""The QA report of the last N days: key figures from the quality table, plots, HTML.

Percentiles are pandas' (linear interpolation between the closest ranks). Earnings are exact
integers in base units per token, shown in whole tokens with the token's decimals.
"""

from __future__ import annotations

import base64
import html
import io
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from fabstir.monitoring.quality import RatingSummary
from fabstir.monitoring.uptime import DAY_S, Uptime
from fabstir.storage import ObjectStore

if TYPE_CHECKING:
    import pandas as pd

PLOTS = ("latency", "earnings", "cache_hits")


@dataclass(frozen=True)
class QAReport:
    """The key figures of one report window ``[start, end]`` (unix seconds)."""

    start: float
    end: float
    jobs_by_state: dict[str, int]
    settled_jobs: int
    earnings: dict[str, int]
    fees: dict[str, int]
    cache_hit_rate: float | None
    ttft_ms_p50: float | None
    ttft_ms_p95: float | None
    decode_tokens_per_s_p50: float | None
    decode_tokens_per_s_p95: float | None
    uptime: dict[str, float | None]
    ratings: RatingSummary | None
    spot_checks: int
    spot_check_pass_rate: float | None
    token_decimals: dict[str, int]

    def earnings_in_tokens(self) -> dict[str, str]:
        """Earnings per token in whole tokens where the decimals are known, else base units."""
        shown = {}
        for token, amount in self.earnings.items():
            decimals = self.token_decimals.get(token)
            if decimals is None:
                shown[token] = f"{amount} base units"
            else:
                whole = Decimal(amount).scaleb(-decimals)
                shown[token] = f"{whole.normalize():f} {token}"
        return shown


def window(frame: pd.DataFrame, now: float, days: int) -> pd.DataFrame:
    """Return the rows of jobs finished in the ``days`` before ``now``."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    start = now - days * DAY_S
    return frame[(frame["finished_at"] > start) & (frame["finished_at"] <= now)]


def build_report(
    frame: pd.DataFrame,
    *,
    now: float,
    days: int,
    uptime: Sequence[Uptime] = (),
    ratings: RatingSummary | None = None,
    job_states: Mapping[str, int] | None = None,
    spot_checks: Sequence[bool] = (),
    token_decimals: Mapping[str, int] | None = None,
) -> QAReport:
    """Compute the report's figures over the ``days`` before ``now``.

    ``job_states`` (flow runs by final state, from Prefect) replaces the count of settled rows
    when given; ``spot_checks`` are pass/fail outcomes of re-execution spot checks, if any ran.
    """
    rows = window(frame, now, days)
    settled = len(rows)
    generated = rows[~rows["cache_hit"].astype(bool)]

    def quantile(column: str, q: float) -> float | None:
        values = generated[column].dropna()
        return float(values.quantile(q)) if len(values) else None

    earnings: dict[str, int] = {}
    fees: dict[str, int] = {}
    for token, group in rows.groupby("token"):
        earnings[str(token)] = sum(int(v) for v in group["paid_to_host"])
        fees[str(token)] = sum(int(v) for v in group["fee"])
    return QAReport(
        start=now - days * DAY_S,
        end=now,
        jobs_by_state=dict(job_states) if job_states is not None else {"settled": settled},
        settled_jobs=settled,
        earnings=earnings,
        fees=fees,
        cache_hit_rate=float(rows["cache_hit"].astype(bool).mean()) if settled else None,
        ttft_ms_p50=quantile("ttft_ms", 0.5),
        ttft_ms_p95=quantile("ttft_ms", 0.95),
        decode_tokens_per_s_p50=quantile("decode_tokens_per_s", 0.5),
        decode_tokens_per_s_p95=quantile("decode_tokens_per_s", 0.95),
        uptime={u.window: u.ratio for u in uptime},
        ratings=ratings,
        spot_checks=len(spot_checks),
        spot_check_pass_rate=sum(spot_checks) / len(spot_checks) if spot_checks else None,
        token_decimals=dict(token_decimals or {"ETH": 18}),
    )


def daily_table(frame: pd.DataFrame, now: float, days: int) -> list[dict[str, Any]]:
    """One row per day with jobs: jobs, cache hits, median TTFT and earnings per token."""
    rows = window(frame, now, days)
    table = []
    for day, group in rows.groupby(rows["finished"].dt.strftime("%Y-%m-%d")):
        ttft = group["ttft_ms"].dropna()
        entry: dict[str, Any] = {
            "day": day,
            "jobs": len(group),
            "cache_hits": int(group["cache_hit"].astype(bool).sum()),
            "ttft_ms_p50": round(float(ttft.median()), 1) if len(ttft) else None,
        }
        for token, by_token in group.groupby("token"):
            entry[f"earned_{token}"] = str(sum(int(v) for v in by_token["paid_to_host"]))
        table.append(entry)
    return table


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.2f} %"


def _number(value: float | None, unit: str) -> str:
    return "n/a" if value is None else f"{value:.1f} {unit}"


def key_figures(report: QAReport) -> list[tuple[str, str]]:
    """The report's figures as (label, value) lines, the same in markdown, HTML and the CLI."""
    earned = report.earnings_in_tokens()
    lines = [
        ("jobs by state", ", ".join(f"{k}: {v}" for k, v in sorted(report.jobs_by_state.items()))),
        ("settled jobs", str(report.settled_jobs)),
        *(
            (f"earned ({token})", f"{earned[token]} ({amount} base units)")
            for token, amount in sorted(report.earnings.items())
        ),
        ("cache hit rate", _percent(report.cache_hit_rate)),
        (
            "TTFT p50 / p95",
            f"{_number(report.ttft_ms_p50, 'ms')} / {_number(report.ttft_ms_p95, 'ms')}",
        ),
        (
            "decode p50 / p95",
            f"{_number(report.decode_tokens_per_s_p50, 'tok/s')} / "
            f"{_number(report.decode_tokens_per_s_p95, 'tok/s')}",
        ),
        *((f"uptime {name}", _percent(ratio)) for name, ratio in report.uptime.items()),
    ]
    if report.ratings is not None:
        mean = report.ratings.mean
        lines.append(
            ("rating", "no ratings" if mean is None else f"{mean:.2f} / 5 ({report.ratings.count})")
        )
    if report.spot_checks:
        lines.append(
            (
                "spot checks passed",
                f"{_percent(report.spot_check_pass_rate)} of {report.spot_checks}",
            )
        )
    return lines


def report_markdown(report: QAReport) -> str:
    start = time.strftime("%Y-%m-%d %H:%M", time.gmtime(report.start))
    end = time.strftime("%Y-%m-%d %H:%M", time.gmtime(report.end))
    lines = [
        f"# Fabstir node QA report\n\n{start} – {end} UTC\n",
        "| figure | value |",
        "|---|---|",
    ]
    lines += [f"| {label} | {value} |" for label, value in key_figures(report)]
    return "\n".join(lines) + "\n"


def render_plots(frame: pd.DataFrame, now: float, days: int) -> dict[str, bytes]:
    """Draw latency over time, earnings per day and cache hits per day as PNG bytes."""
    from matplotlib.figure import Figure

    rows = window(frame, now, days)
    day = rows["finished"].dt.strftime("%m-%d")
    plots = {}

    figure = Figure(figsize=(8, 3.5), layout="constrained")
    axes = figure.add_subplot()
    axes.plot(rows["finished"], rows["total_ms"], "o-", label="total")
    axes.plot(rows["finished"], rows["ttft_ms"], "s", label="time to first token")
    axes.set(title="Latency per job", ylabel="ms")
    axes.legend()
    figure.autofmt_xdate()
    plots["latency"] = _png(figure)

    tokens = sorted(rows["token"].unique()) or ["ETH"]
    figure = Figure(figsize=(8, 2.5 * len(tokens)), layout="constrained")
    for index, token in enumerate(tokens, 1):
        axes = figure.add_subplot(len(tokens), 1, index)
        by_token = rows[rows["token"] == token]
        per_day = by_token.groupby(day[by_token.index])["paid_to_host"].agg(
            lambda amounts: sum(int(v) for v in amounts)
        )
        axes.bar(list(per_day.index), [float(v) for v in per_day.values])
        axes.set(title=f"Earnings per day ({token})", ylabel="base units")
    plots["earnings"] = _png(figure)

    figure = Figure(figsize=(8, 3.5), layout="constrained")
    axes = figure.add_subplot()
    hits = rows.groupby(day)["cache_hit"].agg(lambda flags: int(flags.astype(bool).sum()))
    totals = rows.groupby(day)["cache_hit"].size()
    axes.bar(list(totals.index), list(totals.values - hits.values), label="generated")
    axes.bar(
        list(hits.index),
        list(hits.values),
        bottom=list(totals.values - hits.values),
        label="cache hit",
    )
    axes.set(title="Jobs per day", ylabel="jobs")
    axes.legend()
    plots["cache_hits"] = _png(figure)
    return plots


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def report_html(report: QAReport, plots: Mapping[str, bytes], table: Sequence[dict]) -> str:
    """Return a self-contained HTML page (plots inlined) of the report."""
    figures = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(value)}</td></tr>"
        for label, value in key_figures(report)
    )
    columns = sorted({key for row in table for key in row}, key=lambda k: (k != "day", k))
    daily = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>" for c in columns) + "</tr>"
        for row in table
    )
    header = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    images = "".join(
        f'<img alt="{name}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        for name, png in plots.items()
    )
    return (
        "<!doctype html><meta charset=utf-8><title>Fabstir node QA report</title>"
        f"<h1>Fabstir node QA report</h1><table>{figures}</table>"
        f"<h2>Per day</h2><table><tr>{header}</tr>{daily}</table>{images}\n"
    )


def save_report(
    store: ObjectStore,
    report: QAReport,
    plots: Mapping[str, bytes],
    table: Sequence[dict],
) -> dict[str, str]:
    """Write the HTML, each PNG and the figures as JSON under ``reports/qa/<end time>/``;
    return their URIs by name."""
    import json

    prefix = "reports/qa/" + time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(report.end))
    uris = {"html": store.put(f"{prefix}/report.html", report_html(report, plots, table).encode())}
    for name, png in plots.items():
        uris[name] = store.put(f"{prefix}/{name}.png", png)
    figures = {**asdict(report), "daily": list(table)}
    uris["json"] = store.put(f"{prefix}/report.json", json.dumps(figures, default=str).encode())
    return uris
