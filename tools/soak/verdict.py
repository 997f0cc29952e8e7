"""What a run measured, judged: memory and latency trends, the table, the verdict."""

import math
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tools.soak.clients import Follower
from tools.soak.line import Check, Options
from tools.soak.load import SERVICES, Done, Sample, percentile

# The first part of a run is warm-up (connections, caches, the allocator's arenas
# filling); trends compare the first and last quarter of what follows.
WARMUP_SHARE = 0.2
# RSS moves in steps of a few MiB as Python and gRPC take and return arenas; growth
# beyond this, from the first quarter to the last, is called GROWING (run it longer to
# tell a leak from a cache still filling). Beyond GROSS_GROWTH the run fails.
FLAT_GROWTH, FLAT_MIB, GROSS_GROWTH = 0.05, 3.0, 0.5
# Latency on a shared machine wanders; a p99 this much worse is called DRIFTING.
DRIFT_RATIO, DRIFT_MS = 1.5, 5.0


@dataclass(frozen=True)
class Trend:
    """A figure in the first and the last quarter after warm-up."""

    name: str
    first: float
    last: float

    @property
    def growth(self) -> float:
        return (self.last - self.first) / self.first if self.first else 0.0


def quarters(samples: list[Sample], seconds: float) -> tuple[list[Sample], list[Sample]]:
    settled = [s for s in samples if s.t > seconds * WARMUP_SHARE] or samples
    size = max(1, len(settled) // 4)
    return settled[:size], settled[-size:]


def memory_trends(first: list[Sample], last: list[Sample]) -> list[Trend]:
    def mean(samples: list[Sample], service: str) -> float:
        return sum(s.rss_mib[service] for s in samples) / len(samples)

    return [Trend(s, mean(first, s), mean(last, s)) for s in SERVICES]


def memory_note(trend: Trend) -> str:
    if trend.growth > GROSS_GROWTH:
        return "GROWING GROSSLY"
    flat = trend.last - trend.first <= max(FLAT_MIB, FLAT_GROWTH * trend.first)
    return "FLAT" if flat else "GROWING"


def latency_trend(first: list[Sample], last: list[Sample]) -> Trend:
    def p99(samples: list[Sample]) -> float:
        return percentile([lat for s in samples for lat in s.latencies], 0.99) * 1000

    return Trend("p99 ms", p99(first), p99(last))


def latency_note(trend: Trend) -> str:
    drifted = trend.last > trend.first * DRIFT_RATIO and trend.last - trend.first > DRIFT_MS
    return "DRIFTING" if drifted else "STABLE"


@dataclass
class Result:
    """What one soak measured and found."""

    options: Options
    samples: list[Sample]
    done: list[Done]
    errors: list[str]
    idle: int
    signal_latencies: list[float]
    checks: list[Check]
    terminals: list[Follower]
    # Service -> what it retried or received twice (load.retries).
    retries: dict[str, Counter[str]]
    log_dir: Path

    @property
    def operations(self) -> int:
        return len(self.done)

    @property
    def violations(self) -> list[str]:
        return [f"{c.name}: {v}" for c in self.checks for v in c.violations]

    @property
    def compared(self) -> int:
        return sum(c.compared for c in self.checks)

    @property
    def memory(self) -> list[Trend]:
        return memory_trends(*quarters(self.samples, self.options.seconds))

    @property
    def latency(self) -> Trend:
        return latency_trend(*quarters(self.samples, self.options.seconds))

    @property
    def grossly_growing(self) -> list[str]:
        return [t.name for t in self.memory if memory_note(t) == "GROWING GROSSLY"]

    @property
    def passed(self) -> bool:
        return not (self.violations or self.errors or self.grossly_growing)

    def latency_ms(self, share: float) -> float:
        return percentile([d.latency for d in self.done], share) * 1000

    def signal_ms(self, share: float) -> float:
        return percentile(self.signal_latencies, share) * 1000

    def summary(self) -> str:
        """One line: what ran, what it measured, what held."""
        rss = ", ".join(f"{t.name} {t.first:.0f}->{t.last:.0f}" for t in self.memory)
        return (
            f"{self.operations} operations in {self.options.seconds:.0f} s "
            f"({self.operations / self.options.seconds:.1f}/s, target {self.options.rate:g}/s), "
            f"{len(self.errors)} errors; {len(self.terminals)} terminals "
            f"({sum(f.reconnects for f in self.terminals)} reconnects) showed "
            f"{len(self.signal_latencies)} signals; latency p50/p99 "
            f"{self.latency_ms(0.5):.1f}/{self.latency_ms(0.99):.1f} ms, scan-to-signal p99 "
            f"{self.signal_ms(0.99):.1f} ms; RSS MiB {rss}; "
            f"{sum(sum(found.values()) for found in self.retries.values())} retried or "
            f"duplicate deliveries inside the services; {len(self.checks)} invariant checks "
            f"({self.compared} comparisons), {len(self.violations)} violations"
        )


# Printing


SHORT = {"stations": "sta", "stock": "sto", "orders": "ord", "alerts": "ale"}
TABLE_HEADER = "\n".join(
    [
        "latency in ms: operations (due time to answer) and sig = scan to the supplier's "
        "terminals; RSS in MiB; open fds",
        f"{'t s':>6} {'ops':>5} {'ops/s':>6} {'err':>4} {'p50':>7} {'p95':>7} {'p99':>7} "
        f"{'sig50':>7} {'sig99':>7} | RSS"
        + "".join(f"{SHORT[s]:>7}" for s in SERVICES)
        + " | fds"
        + "".join(f"{SHORT[s]:>5}" for s in SERVICES),
    ]
)


def ms(value: float) -> str:
    return f"{'-':>7}" if math.isnan(value) else f"{value:7.1f}"


def table_row(s: Sample) -> str:
    return (
        f"{s.t:6.0f} {s.ops:5d} {s.rate:6.1f} {s.errors:4d} {ms(s.p50_ms)} {ms(s.p95_ms)} "
        f"{ms(s.p99_ms)} {ms(s.signal_p50_ms)} {ms(s.signal_p99_ms)} |    "
        + "".join(f"{s.rss_mib[name]:7.1f}" for name in SERVICES)
        + " |    "
        + "".join(f"{s.fds[name]:5d}" for name in SERVICES)
    )


def render(result: Result) -> str:
    """The verdict: the load, errors, latency and memory trends, invariants."""
    lines = [
        "",
        *load_lines(result),
        *latency_lines(result),
        *memory_lines(result),
        *check_lines(result),
        f"logs        {result.log_dir}",
        f"verdict     {'PASS' if result.passed else 'FAIL'}",
    ]
    return "\n".join(lines)


def load_lines(result: Result) -> list[str]:
    o = result.options
    return [
        f"Soak of {o.seconds:.0f} s at {o.rate:g} operations/s (open loop): {o.stations} "
        f"stations, {o.loops} loops x {o.cards} cards, {o.terminals} terminals, "
        f"{o.watchers} watchers each of orders and alerts",
        f"operations  {result.operations} ({result.operations / o.seconds:.1f}/s); "
        f"{result.idle} due times found every card busy",
        f"errors      {len(result.errors)}",
        *(f"            {error}" for error in result.errors[:10]),
        f"terminals   {len(result.signal_latencies)} signals shown, "
        f"{sum(f.reconnects for f in result.terminals)} reconnects from the cursor",
        "retried     inside the services: "
        + (
            "; ".join(
                f"{service} {', '.join(f'{what} {n}' for what, n in sorted(found.items()))}"
                for service, found in result.retries.items()
                if found
            )
            or "nothing"
        ),
    ]


def latency_lines(result: Result) -> list[str]:
    o, trend = result.options, result.latency
    by_rpc: dict[str, list[float]] = {}
    for done in result.done:
        by_rpc.setdefault(done.rpc, []).append(done.latency * 1000)
    return [
        f"latency     ms p50 / p95 / p99: all {result.latency_ms(0.5):.1f} / "
        f"{result.latency_ms(0.95):.1f} / {result.latency_ms(0.99):.1f}; scan to signal "
        f"{result.signal_ms(0.5):.1f} / {result.signal_ms(0.95):.1f} / "
        f"{result.signal_ms(0.99):.1f}",
        *(
            f"  {rpc:<19} {len(values):6d} ops  {percentile(values, 0.5):7.1f} "
            f"{percentile(values, 0.95):7.1f} {percentile(values, 0.99):7.1f}"
            for rpc, values in sorted(by_rpc.items(), key=lambda item: -len(item[1]))
        ),
        f"  p99 {trend.first:.1f} ms in the first quarter -> {trend.last:.1f} ms in the last "
        f"(after {o.seconds * WARMUP_SHARE:.0f} s warm-up): {latency_note(trend)} "
        f"(DRIFTING when {DRIFT_RATIO:g} times and {DRIFT_MS:g} ms worse)",
    ]


def memory_lines(result: Result) -> list[str]:
    first, last = quarters(result.samples, result.options.seconds)
    lines = [
        f"memory      RSS MiB, mean of the first quarter -> the last: GROWING when up by "
        f"more than {FLAT_GROWTH:.0%} and {FLAT_MIB:g} MiB, fails above {GROSS_GROWTH:.0%}"
    ]
    for trend in result.memory:
        fds_first = max(s.fds[trend.name] for s in first)
        fds_last = max(s.fds[trend.name] for s in last)
        lines.append(
            f"  {trend.name:<9} {trend.first:7.1f} -> {trend.last:7.1f} ({trend.growth:+.1%}) "
            f"{memory_note(trend):<8} open fds {fds_first} -> {fds_last}"
        )
    return lines


def check_lines(result: Result) -> list[str]:
    lines = [
        f"invariants  {len(result.checks)} checks, {result.compared} comparisons, "
        f"{len(result.violations)} violations"
    ]
    for check in result.checks:
        lines.append(f"  {'FAIL' if check.violations else 'ok':<4} {check.name} ({check.compared})")
        lines += [f"         {v}" for v in check.violations[:5]]
    return lines


def figures(result: Result) -> dict[str, Any]:
    """What --json writes: the options, every sample, the trends and the checks."""
    written: dict[str, Any] = finite(
        {
            "options": asdict(result.options),
            "samples": [
                {k: v for k, v in asdict(s).items() if k != "latencies"} for s in result.samples
            ],
            "operations": dict(Counter(d.rpc for d in result.done)),
            "errors": result.errors,
            "idle": result.idle,
            "retries": result.retries,
            "latency_ms": {
                "p50": result.latency_ms(0.5),
                "p95": result.latency_ms(0.95),
                "p99": result.latency_ms(0.99),
                "signal_p50": result.signal_ms(0.5),
                "signal_p99": result.signal_ms(0.99),
                "p99_first_quarter": result.latency.first,
                "p99_last_quarter": result.latency.last,
                "note": latency_note(result.latency),
            },
            "memory_mib": [
                {**asdict(t), "growth": t.growth, "note": memory_note(t)} for t in result.memory
            ],
            "checks": [
                {"name": c.name, "compared": c.compared, "violations": c.violations}
                for c in result.checks
            ],
            "passed": result.passed,
        }
    )
    return written


def finite(value: Any) -> Any:
    """NaN (nothing measured) as null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value
