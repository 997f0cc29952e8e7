"""Reading h2load's summary and per-request log (tools/bench/h2load.py)."""

import pytest

from tools.bench import h2load

# Recorded from h2load nghttp2/1.52.0, driving tools.bench.bare --empty.
SUMMARY = """starting benchmark...
spawning thread #0: 2 total client(s). Timing-based test with 1s of warm-up time and 3s of \
main duration for measurements.
Warm-up started for thread #0.
progress: 50% of clients started
progress: 100% of clients started
Application protocol: h2c
Warm-up phase is over for thread #0.
Main benchmark duration is started for thread #0.
Main benchmark duration is over for thread #0. Stopping all clients.
Stopped all clients for thread #0

finished in 4.00s, 4245.67 req/s, 264.67KB/s
requests: 12737 total, 12737 started, 12737 done, 12730 succeeded, 7 failed, 0 errored, 0 timeout
status codes: 12730 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 794.00KB (813054) total, 48.21KB (49371) headers (space savings 96.29%), 80.11KB \
(82035) data
                     min         max         mean         sd        +/- sd
time for request:      297us     24.30ms      3.76ms      1.21ms    83.28%
time for connect:        0us         0us         0us         0us     0.00%
time to 1st byte:        0us         0us         0us         0us     0.00%
req/s           :    2121.63     2123.94     2122.79        1.63   100.00%
"""


def test_the_summary_gives_rate_counts_and_times_in_ms():
    assert h2load.parse_summary(SUMMARY) == {
        "rate": 4245.67,
        "requests": 12737,
        "succeeded": 12730,
        "failed": 7,
        "min_ms": pytest.approx(0.297),
        "mean_ms": 3.76,
        "max_ms": 24.30,
    }


def test_output_without_a_summary_is_an_error():
    with pytest.raises(ValueError, match="not an h2load summary"):
        h2load.parse_summary("connect to localhost:1 failed\nNo connection could be made\n")


def test_the_log_gives_answered_requests_latencies_failed_streams_left_out():
    lines = [
        "1795354398599074\t200\t3704",
        "1795354398599295\t-1\t120",
        "1795354398599514\t200\t13730",
    ]
    assert h2load.latencies_ms(lines) == [3.704, 13.73]


def test_percentiles_are_nearest_rank():
    latencies = [float(ms) for ms in range(100, 0, -1)]
    assert h2load.latency_percentiles(latencies) == {"p50_ms": 50, "p95_ms": 95, "p99_ms": 99}
    assert h2load.latency_percentiles([7.0]) == {"p50_ms": 7, "p95_ms": 7, "p99_ms": 7}
    assert h2load.latency_percentiles([]) == {"p50_ms": None, "p95_ms": None, "p99_ms": None}


def test_a_request_is_one_uncompressed_grpc_frame():
    assert h2load.grpc_frame(b"") == b"\x00\x00\x00\x00\x00"
    assert h2load.grpc_frame(b"\x0a\x01x") == b"\x00\x00\x00\x00\x03\x0a\x01x"
