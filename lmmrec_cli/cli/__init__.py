"""The ``lmmrec`` command line: one thin function per subcommand, no logic of its own.

Each ``*_cmds`` module declares its commands on the shared ``app``; importing them here is the
whole registry.
"""

from __future__ import annotations

import gc
import sys

from lmmrec_cli.cli import (  # noqa: F401  (importing them registers their commands)
    data_cmds,
    experiment_cmds,
    explain_cmds,
    llm_cmds,
    report_cmds,
    train_cmds,
    tune_cmds,
)
from lmmrec_cli.cli.app import app
from lmmrec_cli.workspace import set_invocation

__all__ = ["app", "main"]


def main() -> None:
    set_invocation(["lmmrec", *sys.argv[1:]])
    # Everything imported so far lives as long as the process: take it out of the cyclic
    # garbage collector's view, so its full collections scan only what the command builds
    # (about a quarter less collector time in a fully cached 10k-entity `motivate`).
    gc.freeze()
    app()
