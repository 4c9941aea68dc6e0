"""How the command-line programs show Python warnings: one line on stderr, prefixed with the program's name."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def one_line_warnings(program: str) -> Iterator[None]:
    """Inside the block, a warning prints as `program: warning: message`, like the programs' own messages, instead of
    the file, line number and source line of the library call that raised it, which tell a user nothing. Which
    warnings show (the filters) is unchanged; on leaving, the previous display is restored."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"{program}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
