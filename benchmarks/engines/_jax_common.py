"""What the JAX-based engines share (numpyro, pymc-numpyro, pymc-blackjax): float64, and JAX's own
compile-time spans, so that compilation can be told apart from sampling."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

try:
    import jax
except ImportError:  # the engines' availability() says so
    jax = None
else:
    # float64 everywhere, as in the other engines; must be set before any JAX array exists.
    jax.config.update("jax_enable_x64", True)

__all__ = ["jax", "COMPILE_EVENTS", "compile_spans", "union_length"]

# JAX reports each trace, lowering and XLA compilation as a time span (jax.monitoring, in time.time()
# seconds); nested traces overlap, so compile time is the length of the union of those spans.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


@contextlib.contextmanager
def compile_spans() -> Iterator[list[tuple[float, float]]]:
    """Collects (start, end) of every JAX compile event while active (one engine run); on exit,
    drops JAX's compilation caches.

    Every run compiles anew anyway (NumPyro builds fresh jitted loops per call), and each cached XLA
    executable keeps ~1100 memory mappings alive (measured): a long matrix reached the kernel's
    vm.max_map_count (65530) after ~58 runs and XLA crashed ("LLVM compilation error: Cannot
    allocate memory", then SIGSEGV). Clearing keeps the count flat.
    """
    spans: list[tuple[float, float]] = []

    def listener(event: str, start: float, end: float, **_kw) -> None:
        if event in COMPILE_EVENTS:
            spans.append((start, end))

    jax.monitoring.register_event_time_span_listener(listener)
    try:
        yield spans
    finally:
        jax.monitoring.unregister_event_time_span_listener(listener)
        jax.clear_caches()


def union_length(spans: list[tuple[float, float]], within: tuple[float, float] | None = None) -> float:
    """Length of the union of the spans, each clipped to ``within`` = (start, end) when given."""
    if within is not None:
        lo, hi = within
        spans = [(max(s, lo), min(e, hi)) for s, e in spans if e > lo and s < hi]
    total, cur_start, cur_end = 0.0, None, None
    for start, end in sorted(spans):
        if cur_end is None or start > cur_end:
            if cur_end is not None:
                total += cur_end - cur_start
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    return total + (cur_end - cur_start if cur_end is not None else 0.0)
