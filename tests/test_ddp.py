"""Data-parallel training on 2 CPU processes with the gloo backend.

The processes meet through a file store (no network port that another program could take
first), and the test gives up after a timeout instead of hanging when a process does.
"""

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from eaviz.data import load_dataset
from eaviz.models import ClassifierConfig, build_model
from eaviz.train import TrainConfig, train

TIMEOUT_S = 600  # generous: a shared, busy CI machine is slow, but a hang still ends


def worker(rank: int, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank))
    dist.init_process_group("gloo", init_method=f"file://{out}/store", rank=rank, world_size=2)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(ClassifierConfig(dim=32, depth=1, memory_units=16))
    train_set = load_dataset("shapes", "train", limit=256)
    history = train(model, train_set, None, TrainConfig(epochs=1, batch_size=64, device="cpu"), progress=False)
    torch.save(
        {
            "state": dict(model.named_parameters()),
            "seen": history.last["images_per_s"] * history.last["seconds"],
            "loss": history.last["train_loss"],
        },
        f"{out}/rank{rank}.pt",
    )
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_cpu_processes_train_one_model_in_sync(tmp_path):
    context = mp.start_processes(worker, args=(str(tmp_path),), nprocs=2, join=False, start_method="spawn")
    try:
        for _ in range(TIMEOUT_S):
            if context.join(timeout=1):
                break
        else:
            pytest.fail(f"the two training processes did not finish within {TIMEOUT_S} s")
    finally:
        for process in context.processes:
            if process.is_alive():
                process.kill()
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for a, b in zip(rank0["state"].values(), rank1["state"].values()):
        assert torch.equal(a, b)  # gradients were all-reduced: both replicas took the same steps
    assert round(rank0["seen"]) == 256  # images_per_s counts both shards together
    assert rank0["loss"] == rank1["loss"]  # the epoch's loss is averaged over both shards
