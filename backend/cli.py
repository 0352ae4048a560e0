"""The ``crmsync`` command line: local stack, services, importer and admin tasks."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crmsync")
def main() -> None:
    """crmsync: offline-first mobile CRM sync backend."""


if __name__ == "__main__":
    main()
