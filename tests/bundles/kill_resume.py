"""A real interruption for the resume tests: start `python -m pipelines run <workflow> train`, kill -9 it as soon as
the state of a given epoch is on disk, then run the same command with ``resume=true`` and check which epochs ran."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from pipelines.workflows import REPO_ROOT

MAX_EPOCHS = 4
KILL_AFTER_EPOCH = 2


def train_command(workflow: str, overrides: dict) -> list[str]:
    """The command line training ``workflow`` with ``overrides`` as ``--set`` items."""
    args = []
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return [sys.executable, "-m", "pipelines", "run", workflow, "train", *args]


def saved_epoch(state: Path) -> int:
    """Epoch of the training state file, 0 while there is none (the file is replaced atomically)."""
    if not state.is_file():
        return 0
    return int(torch.load(state, map_location="cpu", weights_only=True)["meta"]["epoch"])


def tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "MLFLOW_DISABLE_TELEMETRY": "true"}


def kill_after_epoch(command: list[str], state: Path, log_path: Path) -> int:
    """Run ``command`` and SIGKILL it (no clean-up possible) once ``state`` holds epoch ``KILL_AFTER_EPOCH``;
    returns the epoch saved at the kill, checked to leave epochs to resume."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        try:
            while saved_epoch(state) < KILL_AFTER_EPOCH:
                assert proc.poll() is None, f"training ended before epoch {KILL_AFTER_EPOCH}:\n{tail(log_path)}"
                assert time.monotonic() < deadline, f"no state of epoch {KILL_AFTER_EPOCH} in time:\n{tail(log_path)}"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = saved_epoch(state)
    assert KILL_AFTER_EPOCH <= killed_at < MAX_EPOCHS, "the kill came too late to test a resume"
    return killed_at


def resume_to_the_end(command: list[str], log_path: Path, killed_at: int) -> str:
    """Run the resuming ``command``; checks it succeeds and trains exactly the epochs after ``killed_at``. Returns
    its log."""
    with open(log_path, "w") as log:
        result = subprocess.run(
            command, cwd=REPO_ROOT, env=_env(), stdout=log, stderr=subprocess.STDOUT, timeout=180
        )  # fmt: skip
    text = log_path.read_text(errors="replace")
    assert result.returncode == 0, tail(log_path)
    assert f"at epoch {killed_at} of {MAX_EPOCHS}" in text, tail(log_path)
    trained = sorted({int(e) for e in re.findall(rf"Epoch: (\d+)/{MAX_EPOCHS}, Iter", text)})
    assert trained == list(range(killed_at + 1, MAX_EPOCHS + 1)), "the resumed run must not restart at epoch 1"
    return text
