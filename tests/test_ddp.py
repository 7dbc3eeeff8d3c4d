"""Data-parallel training on 2 CPU processes with the gloo backend."""

import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from eaviz.data import load_dataset
from eaviz.models import ClassifierConfig, build_model
from eaviz.train import TrainConfig, train


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_model(ClassifierConfig(dim=32, depth=1, memory_units=16))
    train_set = load_dataset("shapes", "train", limit=256)
    history = train(model, train_set, None, TrainConfig(epochs=1, batch_size=64, device="cpu"), progress=False)
    torch.save(
        {"state": dict(model.named_parameters()), "seen": history.last["images_per_s"] * history.last["seconds"]},
        f"{out}/rank{rank}.pt",
    )
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_cpu_processes_train_one_model_in_sync(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for a, b in zip(rank0["state"].values(), rank1["state"].values()):
        assert torch.equal(a, b)  # gradients were all-reduced: both replicas took the same steps
    assert round(rank0["seen"]) == 256  # images_per_s counts both shards together
