"""One exit-code contract for every command of the suite, and the error type behind exit code 2.

=====  ==========================================================================================
code   meaning
=====  ==========================================================================================
0      success; for a check or a gate, PASS
1      a FAIL verdict (``python -m reference check``) or a regression (``benchmarks regress``) only
2      unusable input: one line on stderr naming the field and the value
3      internal error, or the one engine run a command asked for failed (crashed, timed out): one
       line on stderr, the traceback kept in a log file whose path it names
=====  ==========================================================================================

Nothing exits 1 by accident: :func:`run_cli` turns every exception that is not a
:class:`UsageError` into 3, so a traceback can never read as a verdict.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["UsageError", "EngineFailure", "EXIT_OK", "EXIT_FAIL", "EXIT_USAGE", "EXIT_INTERNAL", "run_cli", "cache_root",
           "log_dir"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


class UsageError(ValueError):
    """Input the suite cannot use (a data file, a prior text, a flag, a configuration, a path);
    the message names the field and the value. Every command exits 2 on it."""


class EngineFailure(RuntimeError):
    """The engine run a command exists to make failed (an error inside the PPL, a crash of its worker,
    the time limit): exit 3 like an internal error, but the line says what failed instead of calling
    it a bug of the suite."""


def cache_root() -> Path:
    """The suite's own cache folder: ``$EIGHT_SCHOOLS_CACHE``, else ``~/.cache/eight-schools-ppl``
    (``$XDG_CACHE_HOME`` honoured). Compiled programs and internal-error logs live under it."""
    root = os.environ.get("EIGHT_SCHOOLS_CACHE")
    if root:
        return Path(root)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eight-schools-ppl"


def log_dir() -> Path:
    return cache_root() / "logs"


def _log_traceback(prog: str, argv: Sequence[str] | None) -> Path | None:
    stamp = _dt.datetime.now(_dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in prog)
    text = f"{prog} {' '.join(argv or sys.argv[1:])}\n\n{traceback.format_exc()}"
    for folder in (log_dir(), Path.cwd()):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{name}-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return None


def run_cli(main: Callable[[list[str] | None], int], argv: list[str] | None = None, *, prog: str) -> int:
    """Run a command's ``main`` under the contract above and return its exit code."""
    try:
        code = main(argv)
    except UsageError as e:
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except SystemExit as e:  # argparse: 0 for --help, 2 for a bad flag; anything else is ours
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_USAGE)
        return code if code in (EXIT_OK, EXIT_USAGE) else EXIT_INTERNAL
    except BaseException as e:  # noqa: BLE001 - every other failure is an internal error, never a verdict
        where = _log_traceback(prog, argv)
        if isinstance(e, EngineFailure):  # what failed is the engine's run, not the suite
            line, kept = _one_line(e), "details"
        else:
            line, kept = f"internal error: {type(e).__name__}: {_one_line(e)}", "traceback"
        print(f"{prog}: {line}" + (f" ({kept} in {where})" if where else ""), file=sys.stderr)
        return EXIT_INTERNAL
    if code not in (EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERNAL):
        print(f"{prog}: internal error: command returned exit code {code!r}", file=sys.stderr)
        return EXIT_INTERNAL
    return code


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
