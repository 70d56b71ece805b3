"""What the JAX-based engines share (numpyro, pymc-numpyro, pymc-blackjax): float64, and JAX's own
compile-time spans, so that compilation can be told apart from sampling."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from .caches import compilation_cache_dir

__all__ = ["jax", "COMPILE_EVENTS", "CompileLog", "compile_spans", "union_length", "compilation_cache_dir",
           "chain_method_for"]


def cpu_devices_wanted() -> int:
    """How many XLA CPU devices to ask for: NumPyro's chain_method="parallel" runs one chain per device
    (pmap), and with fewer devices than chains it draws them sequentially. At least 8 (or one per CPU),
    so the default 4 chains and up to 8 run in parallel; ``EIGHT_SCHOOLS_JAX_CPU_DEVICES`` overrides."""
    raw = os.environ.get("EIGHT_SCHOOLS_JAX_CPU_DEVICES")
    if raw:
        try:
            n = int(raw)
        except ValueError:
            n = 0
        if n < 1:
            raise ValueError(f"EIGHT_SCHOOLS_JAX_CPU_DEVICES = {raw!r}: must be a positive integer")
        return n
    return max(8, os.cpu_count() or 1)


try:
    import jax
except ImportError:  # the engines' availability() says so
    jax = None
else:
    # float64 everywhere, as in the other engines; must be set before any JAX array exists.
    jax.config.update("jax_enable_x64", True)
    # CPU devices for parallel chains; an XLA_FLAGS device count set by the user wins, and once another
    # module has started JAX's backend the count is fixed: the engines then read jax.local_device_count()
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        try:
            jax.config.update("jax_num_cpu_devices", cpu_devices_wanted())
        except RuntimeError:
            pass
    _cache = compilation_cache_dir()
    if _cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(_cache))
        # cache every executable: this model's are small and quick, and all of them recur every run
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    else:
        jax.config.update("jax_enable_compilation_cache", False)

# JAX reports each trace, lowering and XLA compilation as a time span (jax.monitoring, in time.time()
# seconds); nested traces overlap, so compile time is the length of the union of those spans.
COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)


#: jax.monitoring events counting lookups in the persistent compilation cache
CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"
CACHE_MISS_EVENT = "/jax/compilation_cache/cache_misses"


class CompileLog(list):
    """(start, end) spans of JAX compile events, plus persistent-cache hits and misses."""

    hits: int = 0
    misses: int = 0

    @property
    def cached(self) -> bool:
        """True when every XLA compilation of the run came from the persistent cache."""
        return self.hits > 0 and self.misses == 0

    def cache_note(self) -> str:
        where = compilation_cache_dir()
        if where is None:
            return "persistent compilation cache off (EIGHT_SCHOOLS_JAX_CACHE=0)"
        return f"persistent compilation cache {where}: {self.hits} hits, {self.misses} misses"


@contextlib.contextmanager
def compile_spans() -> Iterator[CompileLog]:
    """Collects (start, end) of every JAX compile event while active (one engine run), and the
    persistent cache's hits and misses; on exit, drops JAX's in-memory compilation caches.

    Every run compiles anew anyway (NumPyro builds fresh jitted loops per call), and each cached XLA
    executable keeps ~1100 memory mappings alive (measured): a long matrix reached the kernel's
    vm.max_map_count (65530) after ~58 runs and XLA crashed ("LLVM compilation error: Cannot
    allocate memory", then SIGSEGV). Clearing keeps the count flat.
    """
    spans = CompileLog()

    def listener(event: str, start: float, end: float, **_kw) -> None:
        if event in COMPILE_EVENTS:
            spans.append((start, end))

    def counter(event: str, **_kw) -> None:
        if event == CACHE_HIT_EVENT:
            spans.hits += 1
        elif event == CACHE_MISS_EVENT:
            spans.misses += 1

    jax.monitoring.register_event_time_span_listener(listener)
    jax.monitoring.register_event_listener(counter)
    try:
        yield spans
    finally:
        jax.monitoring.unregister_event_time_span_listener(listener)
        jax.monitoring.unregister_event_listener(counter)
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


def chain_method_for(wanted: str, chains: int) -> str:
    """``wanted`` unless it is "parallel" and there are fewer CPU devices than chains: NumPyro would then
    draw the chains one after another anyway (with a warning), so say "sequential" up front."""
    if wanted == "parallel" and jax.local_device_count() < chains:
        return "sequential"
    return wanted
