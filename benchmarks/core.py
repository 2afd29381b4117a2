"""The core's costs: breaker, concurrency, guard, fallback (issue 2's figures).

Anchors: a bare call, pybreaker on the same no-op, an unprotected thread pool, and a
hand-written try/except fallback.
"""

from __future__ import annotations

import threading
import time

import pybreaker

from healing import (
    CircuitBreaker,
    CircuitBreakerRegistry,
    CircuitConfig,
    ClinicalContext,
    Guard,
    InMemorySink,
    WindowType,
)

from .harness import Figure, figure, per_call_ns

IO_THREADS = 8
IO_WAIT_S = 0.010
IO_CALLS_PER_THREAD = 30


def _noop() -> None:
    return None


def _protected(breaker: CircuitBreaker, fn, now=time.monotonic):
    """What any caller of the breaker does: decide, call, record (success path)."""
    t0 = now()
    permit = breaker.allow(t0)
    if not permit.allowed:
        raise RuntimeError("benchmark circuit opened")
    result = fn()
    t1 = now()
    breaker.on_result(permit, result, t1 - t0, t1)
    return result


def breaker_overhead() -> list[Figure]:
    ours = CircuitBreaker("bench")
    theirs = pybreaker.CircuitBreaker()
    # Both measured through one Python call level, so the harness costs them the same.
    t = per_call_ns({"bare": _noop, "ours": lambda: _protected(ours, _noop),
                     "pybreaker": lambda: theirs.call(_noop)})
    theirs_ns = t["pybreaker"] - t["bare"]
    return [
        figure("breaker overhead per call (decide + record, success)", t["ours"] - t["bare"],
               "ns", "pybreaker call overhead", theirs_ns),
        figure("bare Python call", t["bare"], "ns", "pybreaker call overhead", theirs_ns),
    ]


def _throughput(call) -> float:
    def io() -> None:
        time.sleep(IO_WAIT_S)

    def worker() -> None:
        for _ in range(IO_CALLS_PER_THREAD):
            call(io)

    threads = [threading.Thread(target=worker) for _ in range(IO_THREADS)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return IO_THREADS * IO_CALLS_PER_THREAD / (time.perf_counter() - t0)


def concurrent_throughput() -> list[Figure]:
    ours = CircuitBreaker("bench-io")
    theirs = pybreaker.CircuitBreaker()
    unprotected = _throughput(lambda fn: fn())
    ours_rate = _throughput(lambda fn: _protected(ours, fn))
    theirs_rate = _throughput(theirs.call)
    anchor = f"unprotected, {IO_THREADS} threads x {IO_WAIT_S * 1e3:.0f} ms I/O"
    return [
        figure("throughput through our breaker", ours_rate, "calls/s", anchor, unprotected),
        figure("throughput through pybreaker", theirs_rate, "calls/s", anchor, unprotected),
    ]


def _bench_guard(config: CircuitConfig) -> Guard:
    guard = Guard(breakers=CircuitBreakerRegistry(default=config), sink=InMemorySink(1000))
    guard.fallbacks.register_provider("clinical_reasoning", "deepseek", _answer)
    return guard


def _answer() -> dict:
    return {"diagnosis": "x", "confidence": 0.9}


def _fail() -> None:
    raise ConnectionError("down")


def guard_costs() -> list[Figure]:
    theirs = pybreaker.CircuitBreaker()
    plain = _bench_guard(CircuitConfig())
    dx = ClinicalContext("diagnostic", "high", patient_id="p-1")
    t = per_call_ns({
        "bare": _noop,
        "answer": _answer,
        "pybreaker": lambda: theirs.call(_noop),
        # Success path of a plain service: safety, breaker, call, record, sink.
        "guard": lambda: plain.call("billing", _noop),
        # A diagnostic service: plus its strategy's integrity check on the answer.
        "guard_dx": lambda: plain.call("clinical_reasoning", _answer, context=dx),
    })
    pyb_us = (t["pybreaker"] - t["bare"]) / 1e3
    figures = [
        figure("guard overhead, success path", (t["guard"] - t["bare"]) / 1e3, "us",
               "pybreaker call overhead", pyb_us),
        figure("guard overhead, diagnostic success (integrity checked)",
               (t["guard_dx"] - t["answer"]) / 1e3, "us", "pybreaker call overhead", pyb_us),
    ]

    # A fallback tier answers. Anchor: the same work hand-written, try/except then the
    # alternative call; the difference is what the guard adds (safety, breakers on both
    # providers, integrity check, outcome record), excluding the tier's own work.
    def by_hand() -> dict:
        try:
            return _fail()  # type: ignore[return-value]
        except ConnectionError:
            return _answer()

    # Never opens (a 1 s time window with an unreachable minimum): the primary fails each call.
    failing = _bench_guard(CircuitConfig(window_type=WindowType.TIME, window_size=1,
                                         minimum_number_of_calls=10**9))
    # The common outage case: the circuit is open and the primary is not called at all.
    opened = _bench_guard(CircuitConfig(window_size=4, minimum_number_of_calls=4))
    for _ in range(4):
        opened.call("clinical_reasoning", _fail, context=dx)
    if opened.breakers.get("clinical_reasoning").state.name != "OPEN":
        raise RuntimeError("benchmark setup: the circuit should be open")
    t = per_call_ns({
        "hand": by_hand,
        "answer": _answer,
        "failing": lambda: failing.call("clinical_reasoning", _fail, context=dx),
        "open": lambda: opened.call("clinical_reasoning", _fail, context=dx),
    }, number=20_000)
    hand_us = t["hand"] / 1e3
    figures += [
        figure("guard added time when primary fails and a tier answers",
               (t["failing"] - t["hand"]) / 1e3, "us", "hand-written try/except fallback",
               hand_us),
        figure("guard added time when circuit is open and a tier answers",
               (t["open"] - t["answer"]) / 1e3, "us", "hand-written try/except fallback",
               hand_us),
    ]
    return figures


def run() -> list[Figure]:
    return breaker_overhead() + concurrent_throughput() + guard_costs()
