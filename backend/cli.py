"""The ``crmsync`` command line: local stack, services, importer and admin tasks.

Each command is a thin wrapper: it parses options, imports its implementation lazily (so
``crmsync --help`` stays fast and one command's dependencies never load for another) and
turns configuration errors into a one-line message with their stable code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

T = TypeVar("T")


@contextmanager
def _config_errors() -> Iterator[None]:
    """Show a typed configuration error as ``Error: <code>: <message>`` (exit code 2)."""
    try:
        yield
    except click.ClickException:
        raise
    except Exception as e:
        code = getattr(e, "code", None)
        if not isinstance(code, str):
            raise
        raise click.UsageError(f"{code}: {e}") from e


def _loaded(loader: Callable[[], T]) -> T:
    with _config_errors():
        return loader()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crmsync")
def main() -> None:
    """crmsync: offline-first mobile CRM sync backend."""


# ---------------------------------------------------------------------------- local stack


@main.command()
@click.option("--port", default=8080, show_default=True, help="Sync API port (0: any free).")
@click.option(
    "--admin-port", default=8081, show_default=True, help="Admin API and metrics port (0: any)."
)
@click.option(
    "--nats-port", default=4222, show_default=True, help="NATS client port (0: any free)."
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("var"),
    show_default=True,
    help="Where NATS data, the SQLite store, dev keys and logs live.",
)
@click.option("--no-demo", is_flag=True, help="Do not load the demo records.")
@click.option("--reset", is_flag=True, help="Delete the data dir's store and streams first.")
@click.option("--appliers", default=1, show_default=True, help="Applier processes to run.")
def up(
    port: int,
    admin_port: int,
    nats_port: int,
    data_dir: Path,
    no_demo: bool,
    reset: bool,
    appliers: int,
) -> None:
    """Run the local stack: NATS, applier and gateway on the embedded store. Ctrl-C stops it."""
    from infra.devstack.stack import StackOptions, run_stack

    options = _loaded(
        lambda: StackOptions(
            port=port,
            admin_port=admin_port,
            nats_port=nats_port,
            data_dir=data_dir,
            demo=not no_demo,
            reset=reset,
            appliers=appliers,
        )
    )
    raise SystemExit(run_stack(options))


# ---------------------------------------------------------------------------- services


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Configuration file (default: $CRMSYNC_CONFIG or ./crmsync.toml).",
)
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics here.")
def applier(config_path: str | None, metrics_port: int | None) -> None:
    """Run an applier: apply pushed changesets and upstream changes to the store."""
    from backend.applier.runner import load_settings, run

    settings = _loaded(lambda: load_settings(config_path, metrics_port=metrics_port))
    raise SystemExit(run(settings))


@main.command()
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, exists=True),
    default=None,
    help="Configuration file (default: $CRMSYNC_CONFIG or ./crmsync.toml).",
)
def gateway(config_path: str | None) -> None:
    """Run a gateway: the sync API and, on its own port, the admin API and metrics."""
    from backend.gateway.server import run

    raise SystemExit(run(_loaded(lambda: _service_config(config_path))))


def _service_config(config_path: str | None) -> Any:
    """The shared configuration, with the store taken from ``CRMSYNC_STORE_*`` if the
    file did not configure one."""
    import dataclasses
    import os

    from backend.config import load_config
    from backend.store.config import StoreConfig

    config = load_config(config_path)
    if not isinstance(config.store, StoreConfig):
        config = dataclasses.replace(config, store=StoreConfig.from_env(os.environ))
    return config


if __name__ == "__main__":
    main()


def _register_importer_commands() -> None:
    # importer.cli imports only click at module level, so `crmsync --help` stays fast.
    from importer.cli import COMMANDS

    for command in COMMANDS:
        main.add_command(command)


_register_importer_commands()
