"""Run the Dynamics 365 Web API emulator: ``python -m infra.dynamics_emulator [--port N]``.

Every setting comes from ``CRMSYNC_EMULATOR_*`` environment variables (see
``docs/dynamics_emulator.md``); the flags below override the most common ones.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

import msgspec

from infra.dynamics_emulator.config import EmulatorConfig, parse_counts
from infra.dynamics_emulator.errors import EmulatorConfigError
from infra.dynamics_emulator.runner import run


def main(argv: list[str] | None = None) -> int:
    """Parse flags, load the configuration and serve until interrupted.

    Args:
        argv: Command-line arguments (defaults to ``sys.argv[1:]``).

    Returns:
        Process exit code.
    """
    parser = argparse.ArgumentParser(prog="python -m infra.dynamics_emulator", description=__doc__)
    parser.add_argument("--host", help="interface to listen on")
    parser.add_argument("--port", type=int, help="port (0: any free port)")
    parser.add_argument("--seed", type=int, help="dataset seed")
    parser.add_argument("--counts", help="records per entity set, e.g. accounts=1000,contacts=5000")
    parser.add_argument("--overlay", help="SQLite file persisting API changes")
    parser.add_argument("--no-auth", action="store_true", help="accept requests without a token")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "seed"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    try:
        if args.counts:
            overrides["counts"] = parse_counts(args.counts)
        if args.overlay:
            overrides["overlay_path"] = args.overlay
        config = EmulatorConfig.from_env(**overrides)
        if args.no_auth:
            config = msgspec.structs.replace(
                config, auth=msgspec.structs.replace(config.auth, required=False)
            )
    except (EmulatorConfigError, ValueError) as e:
        parser.error(str(e))
    with contextlib.suppress(KeyboardInterrupt):
        run(config)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
