"""Options shared by several commands, declared once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lmmrec_cli.workspace import DEFAULT_WORKSPACE, ENV_WORKSPACE, Workspace

WorkspaceOption = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        "-w",
        envvar=ENV_WORKSPACE,
        help=f"Workspace directory (default: ./{DEFAULT_WORKSPACE}).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def open_workspace(path: Path | None) -> Workspace:
    return Workspace.locate(path)
