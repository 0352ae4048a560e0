"""``python -m importer <command>``: the importer commands without the rest of the CLI."""

from __future__ import annotations

import click

from importer.cli import COMMANDS


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """crmsync importer commands."""


for _command in COMMANDS:
    main.add_command(_command)

if __name__ == "__main__":
    main()
