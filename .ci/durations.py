"""Measure what a stranger waits for: the README's set-up line, `nox -s compare` and `nox -s tests`,
cold (a fresh clone, an empty HOME: no pip, uv, httpstan, PyTensor, numba or JAX cache) and warm (the
same command again), and the seconds to the first line of output of compare, regress and bench; and
check what the clone promises: `git status --porcelain` is empty afterwards, `nox -s notebook`
succeeds, and after compare, tests and regress (three nox environments) every Stan program exists as
one build on disk (httpstan's per-environment entries are hard links to the suite's store).

    python .ci/durations.py OUT_DIR [--repo PATH] [--skip-tests]

Writes OUT_DIR/durations.json (`nox -s durations`; `nox -s publish --
durations` copies it into results/durations/ and renders it in the README). Each scenario runs in its own clone
with its own empty HOME, so the cold numbers of one are not warmed by another.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETUP = '"$(sh .ci/python312)" -m venv .venv && . .venv/bin/activate && pip install -q nox uv'
#: how long to wait for a session's first line of its own (after nox's) before giving up
FIRST_LINE_LIMIT_S = 900


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def shell(cmd: str, cwd: Path, env: dict, *, stop_after_plan: bool = False) -> dict:
    """Run ``cmd`` in bash; wall time, time to the first output line and to the job's own first line
    (the first line not printed by nox itself), exit status. ``stop_after_plan`` kills it there."""
    t0 = time.monotonic()
    p = subprocess.Popen(["bash", "-c", f". .venv/bin/activate 2>/dev/null; {cmd}"], cwd=cwd, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    first = plan = None
    tail: list[str] = []
    buf = b""
    while True:
        if stop_after_plan and plan is not None:
            os.killpg(p.pid, 9)
            break
        if not sel.select(timeout=1.0):
            if p.poll() is not None:
                break
            if stop_after_plan and time.monotonic() - t0 > FIRST_LINE_LIMIT_S:
                os.killpg(p.pid, 9)
                break
            continue
        chunk = os.read(p.stdout.fileno(), 65536)
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            now = time.monotonic() - t0
            first = first if first is not None else now
            if plan is None and line.strip() and not line.startswith("nox >"):
                plan = now
            tail = (tail + [line])[-5:]
    rc = p.wait()
    return {"command": cmd, "wall_s": round(time.monotonic() - t0, 1), "first_output_s": first,
            "first_own_line_s": plan, "exit_status": rc, "tail": tail}


#: variables that point a tool at a cache or an environment of this session: a stranger has none of them
NOT_INHERITED = ("VIRTUAL_ENV", "XDG_CACHE_HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "UV_CACHE_DIR",
                 "PIP_CACHE_DIR", "NUMBA_CACHE_DIR", "PYTENSOR_FLAGS", "JAX_COMPILATION_CACHE_DIR",
                 "EIGHT_SCHOOLS_CACHE", "PYTHONPATH", "CMDSTAN", "NOX_DEFAULT_VENV_BACKEND")


def stranger_env(home: Path) -> dict:
    """This shell's environment as a user's own would be (their proxy, certificates and package index
    settings stay), with an empty HOME, no cache or virtual environment of this session, and no
    activated venv on PATH (so the set-up line finds Python 3.12 the way the README says)."""
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED and not k.startswith("NOX_")}
    venv = os.environ.get("VIRTUAL_ENV")
    if venv:
        env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                      if Path(p).resolve() != (Path(venv) / "bin").resolve())
    env.update(HOME=str(home), LANG="C.UTF-8", TERM="dumb")
    return env


def scenario(repo: Path, root: Path, name: str, steps: list[tuple[str, str, bool]]) -> dict:
    home, clone = root / f"home-{name}", root / f"clone-{name}"
    home.mkdir()
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    env = stranger_env(home)
    out = {"setup": shell(SETUP, clone, env)}
    for label, cmd, stop in steps:
        out[label] = shell(cmd, clone, env, stop_after_plan=stop)
        print(f"{name} {label}: {out[label]['wall_s']} s (exit {out[label]['exit_status']})", flush=True)
    out["dirty_after"] = subprocess.run(["git", "status", "--porcelain"], cwd=clone, capture_output=True,
                                        text=True).stdout.splitlines()
    out["stan_builds"] = stan_builds(home)
    return out


def stan_builds(home: Path) -> dict:
    """Compiled Stan programs under ``home``'s caches: httpstan's entries (one per program and
    environment), the suite's store, and the distinct files on disk behind them (hard links count once)."""
    entries = sorted((home / ".cache" / "httpstan").glob("*/models/*/*.so"))
    stored = sorted((home / ".cache" / "eight-schools-ppl" / "httpstan").rglob("*.so"))
    inodes = {(p.stat().st_dev, p.stat().st_ino) for p in entries + stored}
    return {"httpstan_entries": len(entries), "store_entries": len(stored), "distinct_builds": len(inodes)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--skip-tests", action="store_true")
    a = ap.parse_args()
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=a.repo, capture_output=True, text=True).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix="eight-schools-durations-"))
    result = {"git_revision": rev, "cpu": cpu(), "cores": os.cpu_count(), "host": platform.node(),
              "setup_line": SETUP, "scenarios": {}}
    try:
        result["scenarios"]["compare"] = scenario(a.repo, root, "compare", [
            ("cold", "nox -s compare", False), ("warm", "nox -s compare", False),
            ("regress_first_line", "nox -s regress", True), ("bench_first_line", "nox -s bench", True),
            ("notebook", "nox -s notebook", False)])
        if not a.skip_tests:
            result["scenarios"]["tests"] = scenario(a.repo, root, "tests", [
                ("cold", "nox -s tests", False), ("warm", "nox -s tests", False),
                ("compare", "nox -s compare", False), ("regress", "nox -s regress", False)])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    a.out.mkdir(parents=True, exist_ok=True)
    tmp = a.out / ".durations.json.tmp"
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(a.out / "durations.json")
    print(json.dumps({k: {s: v.get("wall_s") for s, v in sc.items() if isinstance(v, dict)}
                      for k, sc in result["scenarios"].items()}, indent=1))
    return 0 if all(v.get("exit_status") in (0, -9, None) for sc in result["scenarios"].values()
                    for v in sc.values() if isinstance(v, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
