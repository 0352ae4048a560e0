"""The embedding example in ``docs/client_sdk.md`` runs, unchanged, against the real stack."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from backend.auth.dev_signer import DEMO_USERS
from infra.devstack.stack import DevStack

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "client_sdk.md"
MARKER = "<!-- example: embed.py -->"


def example_source() -> str:
    text = DOC.read_text()
    after = text.split(MARKER, 1)[1]
    match = re.search(r"```python\n(.*?)```", after, re.S)
    assert match is not None, "the example block is missing"
    return match.group(1)


@pytest.mark.timeout(120)
def test_the_embedding_example_runs_against_the_stack(stack: DevStack, tmp_path: Path) -> None:
    script = tmp_path / "embed.py"
    script.write_text(example_source())
    token_file = tmp_path / "marco.rossi.jwt"
    assert stack.signer is not None
    token_file.write_text(stack.signer.issue(DEMO_USERS["marco.rossi"]) + "\n")
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CRMSYNC_URL": stack.base_url,
        "CRMSYNC_TOKEN_FILE": str(token_file),
        "CRMSYNC_REPLICA": str(tmp_path / "demo-phone.db"),
        "CRMSYNC_DEVICE_ID": f"docs-{uuid.uuid4().hex[:8]}",
    }
    run = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    assert "lead is synced at version 1" in out, out
    assert "checksums ok: True" in out, out
    assert "search: ['Verdi Macchine S.r.l.']" in out, out
