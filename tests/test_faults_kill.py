"""kill -9 in the middle of saving a checkpoint: last.pt stays loadable and the run resumes.

A real `python -m eaviz train` process is killed the moment its temporary checkpoint file
appears (a save is in progress), three times, each restart resuming from last.pt. Bounded:
a small model on 128 synthetic images, and a timeout on every wait.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from eaviz._io import claim_folder, read_checkpoint
from eaviz.data import load_dataset
from eaviz.models import ClassifierConfig, build_model
from eaviz.train import TrainConfig, train

KILLS = 3
WAIT_S = 300  # for one save to start (process start-up included)
FLAGS = ["--limit", "128", "--epochs", "1000", "--batch-size", "32", "--dim", "64", "--depth", "2",
         "--memory-units", "8", "--device", "cpu"]  # fmt: skip


def start(out, resume: bool) -> subprocess.Popen:
    argv = [sys.executable, "-m", "eaviz", "train", "shapes", *FLAGS, "--out", str(out)]
    if resume:
        argv += ["--resume", str(out / "last.pt")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def kill_during_save(process: subprocess.Popen, out) -> bool:
    """SIGKILL ``process`` as soon as a temporary file shows a save over an existing last.pt in progress.

    Returns True if the kill landed during a save.
    """
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and process.poll() is None:
        if any(out.glob(".last.pt.*.tmp")) and (out / "last.pt").exists():
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
            return True
        time.sleep(0.0005)
    process.kill()
    process.wait(timeout=30)
    return False


def test_kill_during_save_never_leaves_last_pt_unloadable_and_the_run_resumes(tmp_path):
    epochs, caught = [], 0
    for _ in range(KILLS):
        process = start(tmp_path, resume=(tmp_path / "last.pt").exists())
        caught += kill_during_save(process, tmp_path)
        assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
        if (tmp_path / "last.pt").exists():
            epochs.append(read_checkpoint(tmp_path / "last.pt")["epoch"])  # loads: never half a file
    assert caught >= 1, "no kill landed during a save"
    assert epochs and epochs == sorted(epochs), epochs  # restarts resumed, none started over
    assert (tmp_path / ".lock").exists()  # left by the killed process
    with pytest.warns(UserWarning, match="taking over"), claim_folder(tmp_path):
        assert not list(tmp_path.glob(".*.tmp"))  # leftovers of the killed saves are gone
    model = build_model(ClassifierConfig(dim=64, depth=2, memory_units=8))
    config = TrainConfig(epochs=1000, batch_size=32, device="cpu")
    history = train(model, load_dataset("shapes", "train", limit=128), load_dataset("shapes", "val", limit=128),
                    config, out=tmp_path, resume=tmp_path / "last.pt", stop_after=1, progress=False)  # fmt: skip
    assert history.last["epoch"] == epochs[-1] + 1
    assert torch.load(tmp_path / "last.pt", weights_only=True)["epoch"] == epochs[-1] + 1
