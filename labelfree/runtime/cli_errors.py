"""The one error path of every command-line tool: ``error: <message>`` on stderr, exit status 2.

Bad input (a missing file, a flag that contradicts a checkpoint, an unreadable scan) is the
user's to fix, so it is one line naming the file and the problem, never a traceback. Each
console-script ``main`` names the exception types that mean bad input::

    @exits_on(DatalistError, CheckpointError, ValueError)
    def main(argv=None) -> int:
        ...

Failing surroundings take the same path in every tool without being named: an output folder
that cannot be created or written, a write that fails mid-run (disk full, quota, ``ulimit
-f``) raise :class:`labelfree.io.atomic.OutputWriteError` ("cannot write <file>: No space
left on device; the earlier file is kept unchanged").

It lives in :mod:`labelfree.runtime` (layer 2), below every package that has a command line
(``labelfree.data``, ``labelfree.phantom``, ``labelfree.apps``, ``labelfree.cli``), so all of
them can use it without importing upwards.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable

from labelfree.io.atomic import OutputWriteError

#: Exit status of bad input (argparse's own usage errors exit 2 as well).
EXIT_BAD_INPUT = 2


def print_error(error: BaseException) -> None:
    """``error: <message>`` on stderr, from rank 0 only (every rank checks the same files)."""
    from labelfree.runtime.distributed import env_rank  # here: it imports torch, which light tools avoid

    if env_rank() == 0:
        print(f"error: {error}", file=sys.stderr, flush=True)


def exits_on(*errors: type[BaseException], code: int = EXIT_BAD_INPUT) -> Callable[[Callable], Callable]:
    """Decorate an entry point: an exception of ``errors`` becomes one line and exit status ``code``.

    A ``main`` that returns its exit status (annotated ``-> int``, for
    ``sys.exit(main())``) returns ``code``; any other raises ``SystemExit(code)``. Either
    way the process exits with ``code``, and Python callers keep the convention they had.

    Args:
        errors: the exception types that mean bad input; anything else keeps its traceback
            (a bug should be reported with one). :class:`OutputWriteError` is always added.
        code: the exit status (2; ``labelfree-check-data`` keeps its documented 1).
    """
    if not errors:
        raise TypeError("exits_on needs at least one exception type")
    errors = (*errors, OutputWriteError)

    def decorate(main: Callable) -> Callable:
        returns_status = inspect.signature(main).return_annotation in (int, "int")

        @functools.wraps(main)
        def wrapper(*args, **kwargs):
            try:
                return main(*args, **kwargs)
            except errors as e:
                print_error(e)
                if returns_status:
                    return code
                raise SystemExit(code) from None

        return wrapper

    return decorate
