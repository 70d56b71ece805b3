"""What the JAX-based engines share (numpyro, blackjax, pymc-numpyro, pymc-blackjax): float64, JAX's
own compile-time spans, so that compilation can be told apart from sampling, and compiled programs
kept in process between runs (:class:`ChainPrograms`, :class:`ProgramCache`)."""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from typing import Any

from .base import COMPILED, REUSED, SettingsError, Timings
from .caches import compilation_cache_dir
from .convert import point_arrays

__all__ = ["jax", "COMPILE_EVENTS", "CompileLog", "compile_spans", "union_length", "compilation_cache_dir",
           "chain_method_for", "CHAIN_METHODS", "ChainPrograms", "NumPyroChains", "ProgramCache",
           "PROGRAMS_KEPT", "device_scope", "device_label", "JAX_PLATFORM", "constrained_log_density"]

#: Settings.device -> JAX's platform name
JAX_PLATFORM = {"cpu": "cpu", "gpu": "gpu"}

#: how an engine may run its chains: one per XLA CPU device (pmap), all in one vmapped program, or one
#: after another through the one-device program of "parallel" (so both give the same draws)
CHAIN_METHODS = ("parallel", "vectorized", "sequential")

#: compiled programs an engine keeps per process (least recently used evicted). A kept program (two
#: executables, warmup and sampling) holds memory maps: 230 (numpyro) and 203 (blackjax) at 4 chains
#: on 8 XLA CPU devices here, and an AMD EPYC once showed ~1100 per executable (see compile_spans).
#: Even at that, 4 programs per engine stay far below the kernel's vm.max_map_count (65530).
PROGRAMS_KEPT = 4


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
    import jax.numpy as jnp
except ImportError:  # the engines' availability() says so
    jax = jnp = None
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
def compile_spans(*, clear: bool = True) -> Iterator[CompileLog]:
    """Collects (start, end) of every JAX compile event while active (one engine run), and the
    persistent cache's hits and misses; on exit, with ``clear``, drops JAX's in-memory caches.

    Each cached XLA executable keeps ~1100 memory mappings alive (measured): a long matrix of runs
    that each compile afresh (pm.sample's JAX samplers) reached the kernel's vm.max_map_count (65530)
    after ~58 runs and XLA crashed ("LLVM compilation error: Cannot allocate memory", then SIGSEGV).
    Clearing keeps the count flat. Engines that keep their own compiled programs (numpyro, blackjax:
    :class:`ChainPrograms` in a bounded :class:`ProgramCache`) pass ``clear=False``: their executables
    are theirs, released when the cache evicts them, and a new seed of a kept program compiles nothing.
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
        if clear:
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


def _take(tree: Any, start: int, stop: int) -> Any:
    return jax.tree.map(lambda x: x[start:stop], tree)


class ChainPrograms:
    """The compiled programs of one engine program (a problem and settings, all but the seed), one per
    phase ("warmup", "sample"), each a one-chain function mapped over the chains by ``method``:

    * "parallel": ``jax.pmap``, one chain per XLA CPU device (needs a device per chain);
    * "vectorized": ``jax.jit(jax.vmap(...))``, every chain in lock-step in one program;
    * "sequential": the "parallel" program compiled for one device, run once per chain; a chain's
      draws are the same as under "parallel" (pmap runs that one-device program on each device).

    Each is lowered and compiled ahead of time (``.lower(...).compile()``) on its first call and kept
    here, so later calls (another seed) trace and compile nothing, and JAX's own caches never hold
    these executables: dropping this object releases them. Arguments are pytrees whose array leaves
    have the chains on their leading axis, except those whose ``in_axes`` entry is None (broadcast).
    """

    def __init__(self, method: str) -> None:
        if method not in CHAIN_METHODS:
            raise ValueError(f"chain method = {method!r}: must be one of {', '.join(CHAIN_METHODS)}")
        self.method = method
        self._compiled: dict[Hashable, Callable] = {}

    def __len__(self) -> int:
        return len(self._compiled)

    def run(self, phase: str, fn: Callable, args: tuple, in_axes: tuple | int = 0) -> Any:
        """``fn`` mapped over the chains of ``args``; ``fn`` is traced only on a phase's first call
        (or when the arguments' structure changes), so it must not depend on anything else."""
        key = (phase, jax.tree.structure(args), in_axes)
        program = self._compiled.get(key)
        if program is None:
            program = self._compiled[key] = self._compile(fn, args, in_axes)
        return program(*args)

    def _compile(self, fn: Callable, args: tuple, in_axes: tuple | int) -> Callable:
        if self.method == "vectorized":
            return jax.jit(jax.vmap(fn, in_axes=in_axes)).lower(*args).compile()
        if self.method == "parallel":
            return jax.pmap(fn, in_axes=in_axes).lower(*args).compile()
        axes = in_axes if isinstance(in_axes, tuple) else (in_axes,) * len(args)
        mapped = [ax is not None for ax in axes]
        chains = _leading_size(args, mapped)
        one = jax.pmap(fn, in_axes=in_axes).lower(*self._chain(args, mapped, 0)).compile()

        def sequential(*call_args):
            outs = [one(*self._chain(call_args, mapped, i)) for i in range(chains)]
            return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)

        return sequential

    @staticmethod
    def _chain(args: tuple, mapped: list[bool], i: int) -> tuple:
        return tuple(_take(a, i, i + 1) if m else a for a, m in zip(args, mapped, strict=True))


def _leading_size(args: tuple, mapped: list[bool]) -> int:
    sizes = {leaf.shape[0] for a, m in zip(args, mapped, strict=True) if m for leaf in jax.tree.leaves(a)}
    if len(sizes) != 1:
        raise ValueError(f"chain axis sizes {sorted(sizes)}: the mapped arguments must agree on one")
    return sizes.pop()


class NumPyroChains:
    """NumPyro's ``chain_method`` as a callable (NumPyro hands it the one-chain function): runs the
    chains through the program's ChainPrograms, keyed by the phase the engine is in ("warmup" and
    "sample" for the numpyro engine's two calls; "run" where one ``MCMC.run`` does both, as
    pm.sample's NumPyro path does)."""

    def __init__(self, method: str, phase: str = "warmup") -> None:
        self.programs = ChainPrograms(method)
        self.phase = phase

    def __call__(self, one_chain: Callable) -> Callable:
        return lambda map_args: self.programs.run(self.phase, one_chain, (map_args,))

    def route_single_chain(self, mcmc: Any) -> None:
        """NumPyro runs one chain without its chain_method (eagerly, re-tracing on every call): route
        that chain through the same compiled programs, as a batch of one."""
        original = mcmc._single_chain_mcmc  # NumPyro's one-chain function, the one chain_method maps

        def one(init, **kwargs):
            batched = jax.tree.map(lambda x: x[None], init)
            out = self(functools.partial(original, **kwargs))(batched)
            return jax.tree.map(lambda x: x[0], out)

        mcmc._single_chain_mcmc = one


class ProgramCache:
    """An engine's compiled programs in this process, keyed by everything but the seed; holds at most
    ``size``, evicting the least recently used (its executables are freed with it, and JAX's own
    in-memory caches are cleared then, so no trace or lowering of it lingers)."""

    def __init__(self, size: int = PROGRAMS_KEPT) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"program cache size = {size!r}: must be an integer >= 1")
        self.size = size
        self._programs: OrderedDict[Hashable, Any] = OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._programs)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._programs

    def get(self, key: Hashable, build: Callable[[], Any]) -> tuple[Any, bool]:
        """(the program for ``key``, whether it was kept from an earlier run); builds it if needed."""
        if key in self._programs:
            self._programs.move_to_end(key)
            return self._programs[key], True
        program = build()
        self._programs[key] = program
        while len(self._programs) > self.size:
            self._programs.popitem(last=False)
            self.evictions += 1
            jax.clear_caches()  # kept programs own their executables: only traces and eager ops go
        return program, False

    def discard(self, key: Hashable) -> None:
        """Forget ``key``'s program (a run of it failed part-way: its state is not to be trusted)."""
        if self._programs.pop(key, None) is not None:
            jax.clear_caches()

    def clear(self) -> None:
        self._programs.clear()
        jax.clear_caches()


def phase_timings(t0: float, built: float, warmed: float, sampled: float, warmup_compile: float,
                  run_compile: float, cached: bool) -> Timings:
    """The Timings of a JAX engine's run (NumPyro, BlackJAX): the warmup and sampling calls' wall time
    less the JAX compile time inside each (``warmup_compile``, ``run_compile``), compile_s the model
    build plus both compile times; ``t0`` the run's start, ``built`` the model built, ``warmed`` the
    warmup done, ``sampled`` the draws done (perf_counter)."""
    warmup_s = max(0.0, warmed - built - warmup_compile)
    sampling_s = max(0.0, sampled - warmed - run_compile)
    return Timings(compile_s=(built - t0) + warmup_compile + run_compile, inference_s=warmup_s + sampling_s,
                   warmup_s=warmup_s, sampling_s=sampling_s, total_s=time.perf_counter() - t0,
                   compile_cached=cached)


def jax_manifest() -> dict:
    """The JAX fields every JAX engine's manifest records."""
    import jaxlib  # with JAX: optional, lazy

    return {"jax_version": jax.__version__, "jaxlib_version": jaxlib.__version__,
            "jax_enable_x64": bool(jax.config.jax_enable_x64), "backend": jax.default_backend()}



def _devices(device: str) -> list:
    """JAX's devices of ``device`` (Settings.device); a platform JAX does not have here is unusable input."""
    try:
        found = jax.devices(JAX_PLATFORM[device])
    except RuntimeError:
        found = []
    if not found:
        raise SettingsError(f"device = {device!r}: JAX sees no {device.upper()} here (backends: "
                            f"{jax.default_backend()}); for a GPU: pip install 'eight-schools-ppl[gpu]'")
    return found


@contextlib.contextmanager
def device_scope(device: str) -> Iterator[None]:
    """Run the JAX work inside on ``device``'s first JAX device (its arrays and compiled programs)."""
    with jax.default_device(_devices(device)[0]):
        yield


def device_label(device: str) -> str:
    """The device a run used, in words: "cpu × 2" (cores) or the GPU's name, e.g. "NVIDIA H200"."""
    if device == "cpu":
        return f"cpu × {len(os.sched_getaffinity(0))}"
    return str(_devices(device)[0].device_kind)


def require_compile_events(reused: bool, warmup_compile: float) -> None:
    """A program compiled in this run must have shown JAX's compile events; without them (their names
    changed in a JAX release) compile time cannot be told apart from sampling, so the run fails."""
    if not reused and warmup_compile == 0.0:
        raise RuntimeError(
            f"jax {jax.__version__} reported no compile events {COMPILE_EVENTS}: "
            "their names changed, so compile time cannot be separated from sampling"
        )


def jax_run_manifest(chain_method: str, chains: int, reused: bool, spans: CompileLog) -> dict:
    """How a JAX engine's run ran: its chains over the XLA CPU devices, the threads and XLA flags, and
    whether its program was kept from an earlier run or compiled (and from which cache)."""
    return {"parallel": {"chain_method": chain_method, "chains": chains, "cpu_devices": jax.local_device_count()},
            "threads": os.cpu_count(),  # XLA's CPU intra-op thread pool defaults to every core
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "program": REUSED if reused else COMPILED,
            "compile_cache": REUSED if reused else spans.cache_note()}


def constrained_log_density(problem) -> Callable:
    """models/jax_model.py's constrained density at a point (keys mu, tau, theta | theta_tilde): no
    Jacobian, -inf outside the prior's support; what every engine on that JAX model answers for
    ``Engine.log_density``."""
    from models import jax_model  # written in jax.numpy: loaded with JAX, lazily

    data, prior, param = problem.data, problem.prior, problem.parameterization
    fn = jax.jit(jax_model.build(prior, param, data.J).constrained_log_density)
    y, sigma = data.y_array, data.sigma_array

    def log_density(point) -> float:
        return float(fn(point_arrays(point, data, prior, param), y, sigma))

    return log_density
