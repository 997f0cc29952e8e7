"""What a benchmark run measured, as figures: a phase's rate and latencies, the
ratios to the ceilings, the table printed, the JSON written and the plot drawn."""

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.bench.bare import CLIENT as BARE_CLIENT
from tools.bench.h2load import latency_percentiles
from tools.bench.k6 import Call, Run
from tools.bench.usage import PG_PREFIX

SATURATION = "saturation"
PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")


@dataclass
class Phase:
    """One load on one method: closed loop at saturation (offered None) or open loop
    at `offered` calls a second."""

    series: str  # "scan", "complete", "bare scan"
    load: str  # SATURATION, "25%", ...
    offered: float | None
    rate: float  # calls that succeeded, per second of the phase
    # The same per second of the phase and the delivery of the events it caused
    # (drain_seconds): the rate the stack can keep up, and what ratios compare.
    sustained: float
    calls: int
    failed: int
    dropped: int  # calls an open loop could not start in time (k6 ran out of VUs)
    seconds: float
    latency: dict[str, float | None]
    # CPU seconds per process over the phase and the delivery of the events it caused.
    cpu: dict[str, float]
    drain_seconds: float
    # Scans only: from the scan's start to the supplier's stream delivering its signal.
    signal: dict[str, float | None] | None = None
    signals_missing: int = 0


def summarize(
    series: str,
    load: str,
    offered: float | None,
    run: Run,
    cpu: dict[str, float],
    drain_seconds: float,
) -> Phase:
    succeeded = [call.ms for call in run.calls if call.ok]
    window = run.window
    return Phase(
        series=series,
        load=load,
        offered=offered,
        rate=len(succeeded) / window if window else 0.0,
        sustained=len(succeeded) / (window + drain_seconds) if window else 0.0,
        calls=len(run.calls),
        failed=len(run.calls) - len(succeeded),
        # A closed loop's dropped iterations are only the calls left when time ran out.
        dropped=run.dropped if offered is not None else 0,
        seconds=window,
        latency=latency_percentiles(succeeded),
        cpu=cpu,
        drain_seconds=drain_seconds,
    )


def add_signals(phase: Phase, calls: list[Call], arrivals: dict[str, float]) -> None:
    """Scan to signal for the phase's successful scans; a signal never seen is missing."""
    scans = [call for call in calls if call.ok]
    waits = [(arrivals[c.card] - c.started) * 1000 for c in scans if c.card in arrivals]
    phase.signal = latency_percentiles(waits)
    phase.signals_missing = len(scans) - len(waits)


@dataclass
class Result:
    setup: dict[str, Any]
    phases: list[Phase]
    # From tools.bench.ceilings: {"rate", "p50_ms", ...} for "empty call", "scan SQL".
    ceilings: dict[str, dict[str, Any]]
    peak_rss_mib: dict[str, float]
    ratios: dict[str, dict[str, float | None]] = field(default_factory=dict)
    # CPU ms per scan at saturation of the scan's own path, ours and the bare one's.
    scan_path: dict[str, float] = field(default_factory=dict)

    def phase(self, series: str, load: str) -> Phase | None:
        return next((p for p in self.phases if p.series == series and p.load == load), None)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    return ours / theirs if ours is not None and theirs else None


def compute_ratios(result: Result) -> dict[str, dict[str, float | None]]:
    """Our scan at saturation as a fraction of each ceiling's rate, and its latency as
    a multiple of theirs; and our scan against the bare one at each open-loop load."""
    ours = result.phase("scan", SATURATION)
    if ours is None:
        return {}
    ceilings = dict(result.ceilings)
    if bare := result.phase("bare scan", SATURATION):
        ceilings = {"bare scan": {"rate": bare.sustained, **bare.latency}, **ceilings}
    ratios: dict[str, dict[str, float | None]] = {
        name: {
            "rate": ratio(ours.sustained, ceiling.get("rate")),
            "p50": ratio(ours.latency["p50_ms"], ceiling.get("p50_ms")),
            "p99": ratio(ours.latency["p99_ms"], ceiling.get("p99_ms")),
        }
        for name, ceiling in ceilings.items()
    }
    for phase in result.phases:
        bare = result.phase("bare scan", phase.load)
        if phase.series == "scan" and phase.load != SATURATION and bare:
            ratios[f"bare scan at {phase.load}"] = {
                "rate": ratio(phase.sustained, bare.sustained),
                "p50": ratio(phase.latency["p50_ms"], bare.latency["p50_ms"]),
                "p99": ratio(phase.latency["p99_ms"], bare.latency["p99_ms"]),
            }
    return ratios


# The processes and PostgreSQL clients that serve a scan, leaving out the consumers
# of its events (stock, alerts), the watcher and k6.
OUR_SCAN_PATH = ("stations", PG_PREFIX + "stations", PG_PREFIX + "stations-relay")
BARE_SCAN_PATH = ("bare", PG_PREFIX + BARE_CLIENT)


def scan_path_cpu(result: Result) -> dict[str, float]:
    """CPU ms per scan at saturation of the scan path alone, ours and the bare
    prototype's, and bare / ours: the rate ratio on a machine where the consumers and
    the load generator had cores of their own. Empty without the figures for it."""
    ours, bare = result.phase("scan", SATURATION), result.phase("bare scan", SATURATION)
    if not (ours and bare and ours.calls and bare.calls):
        return {}
    if not (set(OUR_SCAN_PATH) <= ours.cpu.keys() and set(BARE_SCAN_PATH) <= bare.cpu.keys()):
        return {}
    ours_ms = 1000 * sum(ours.cpu[n] for n in OUR_SCAN_PATH) / ours.calls
    bare_ms = 1000 * sum(bare.cpu[n] for n in BARE_SCAN_PATH) / bare.calls
    return {"ours_ms": ours_ms, "bare_ms": bare_ms, "ratio": bare_ms / ours_ms}


# The table


def _number(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


PHASE_HEADER = (
    f"{'':<10} {'load':<10} {'offered/s':>9} {'rate/s':>8} {'drain s':>7} {'kept/s':>8} "
    f"{'calls':>6} {'fail':>4} {'drop':>4} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}"
)


def phase_row(phase: Phase) -> str:
    lat = phase.latency
    return (
        f"{phase.series:<10} {phase.load:<10} {_number(phase.offered):>9} "
        f"{phase.rate:>8.1f} {phase.drain_seconds:>7.1f} {phase.sustained:>8.1f} "
        f"{phase.calls:>6} {phase.failed:>4} {phase.dropped:>4} "
        f"{_number(lat['p50_ms']):>7} {_number(lat['p95_ms']):>7} {_number(lat['p99_ms']):>7}"
    )


def ceiling_row(name: str, figures: dict[str, Any]) -> str:
    return (
        f"{name:<21} {'':>9} {figures['rate']:>8.1f} {'':>7} {figures['rate']:>8.1f} "
        f"{figures['requests']:>6} {figures['failed']:>4} {'':>4} "
        f"{_number(figures['p50_ms']):>7} {_number(figures['p95_ms']):>7} "
        f"{_number(figures['p99_ms']):>7}"
    )


def render(result: Result) -> str:
    lines = ["", "Results", PHASE_HEADER, *(phase_row(p) for p in result.phases)]
    lines += [ceiling_row(name, figures) for name, figures in result.ceilings.items()]
    lines += ["", "Scan to signal (scan start to the supplier's WatchSignals delivering it)"]
    lines.append(f"{'load':<10} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'missing':>7}")
    for phase in result.phases:
        if phase.signal is not None:
            lines.append(
                f"{phase.load:<10} {_number(phase.signal['p50_ms']):>7} "
                f"{_number(phase.signal['p95_ms']):>7} {_number(phase.signal['p99_ms']):>7} "
                f"{phase.signals_missing:>7}"
            )
    lines += ["", "Our scan at saturation against each ceiling (ours / theirs)"]
    lines.append(f"{'':<22} {'rate':>7} {'p50':>7} {'p99':>7}")
    for name, figures in result.ratios.items():
        lines.append(
            f"{name:<22} {_times(figures['rate']):>7} {_times(figures['p50']):>7} "
            f"{_times(figures['p99']):>7}"
        )
    if path := result.scan_path:
        lines += [
            "",
            "The scan path alone (stations and PostgreSQL for it and its relay; bare and its"
            " PostgreSQL)",
            f"CPU ms per scan at saturation: ours {path['ours_ms']:.2f}, bare "
            f"{path['bare_ms']:.2f}; bare / ours {_times(path['ratio'])}",
        ]
    lines += ["", *cpu_table(result)]
    return "\n".join(lines)


MIN_CLIENT_SECONDS = 0.01


def cpu_table(result: Result) -> list[str]:
    """CPU seconds per process and phase, then PostgreSQL's per client (those that
    took a hundredth of a second in some phase: the JSON has them all); at saturation
    also CPU ms per call."""
    every = sorted({name for phase in result.phases for name in phase.cpu})
    processes = [name for name in every if not name.startswith(PG_PREFIX)]
    clients = [
        name.removeprefix(PG_PREFIX)
        for name in every
        if name.startswith(PG_PREFIX)
        and any(phase.cpu.get(name, 0.0) >= MIN_CLIENT_SECONDS for phase in result.phases)
    ]
    lines = _cpu_rows(result, "CPU seconds", processes, "")
    peaks = " ".join(f"{_number(result.peak_rss_mib.get(name)):>9}" for name in processes)
    lines.append(f"{'peak RSS MiB':<21} {peaks}")
    if clients:
        lines += ["", *_cpu_rows(result, "PostgreSQL for", clients, PG_PREFIX)]
    return lines


def _cpu_rows(result: Result, title: str, names: list[str], prefix: str) -> list[str]:
    width = max(9, *(len(name) for name in names))
    lines = [f"{title:<21} " + " ".join(f"{name:>{width}}" for name in names)]
    for phase in result.phases:
        seconds = [phase.cpu.get(prefix + name) for name in names]
        cells = " ".join(f"{_number(value, 2):>{width}}" for value in seconds)
        lines.append(f"{phase.series + ' ' + phase.load:<21} {cells}")
        if phase.load == SATURATION and phase.calls:
            per_call = " ".join(
                f"{_number(None if value is None else 1000 * value / phase.calls, 2):>{width}}"
                for value in seconds
            )
            lines.append(f"{'  CPU ms per call':<21} {per_call}")
    return lines


# The plot


def plot(result: Result, path: Path) -> None:
    """p50 and p99 against offered load for each series' RPC (and scan to signal),
    with each series' saturation rate as a dotted line of its colour."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot, ticker

    figure, axes = pyplot.subplots(figsize=(9, 5.5))
    series = list(dict.fromkeys(phase.series for phase in result.phases))
    for number, name in enumerate(series):
        colour = f"C{number}"
        phases = [p for p in result.phases if p.series == name]
        open_loop = [p for p in phases if p.offered is not None]
        offered = [_value(p.offered) for p in open_loop]
        curves = [(f"{name} RPC", [p.latency for p in open_loop], "-")]
        if all(p.signal for p in open_loop):
            curves.append((f"{name} to signal", [p.signal or {} for p in open_loop], "--"))
        for label, figures, style in curves:
            for quantile, marker in (("p50_ms", "o"), ("p99_ms", "^")):
                axes.plot(
                    offered,
                    [_value(f[quantile]) for f in figures],
                    style,
                    marker=marker,
                    color=colour,
                    alpha=1.0 if quantile == "p50_ms" else 0.5,
                    label=f"{label} {quantile[:3]}",
                )
        saturation = next(p.sustained for p in phases if p.load == SATURATION)
        axes.axvline(saturation, color=colour, linestyle=":", linewidth=1)
    axes.set_xlim(left=0)
    axes.set_yscale("log")
    axes.yaxis.set_major_formatter(ticker.ScalarFormatter())
    axes.set_xlabel("offered load (calls/s); dotted: saturation (kept up)")
    axes.set_ylabel("latency (ms)")
    axes.set_title("Latency against offered load, at 25%, 50% and 90% of saturation")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)


def _value(figure: float | None) -> float:
    """None (no calls to measure) as a gap in the line."""
    return math.nan if figure is None else figure
