"""Faults and bad input: every user error is one line with a non-zero exit, and nothing is lost.

Each test is one probe of a hostile but realistic user: a bad number, a broken file, a
second run into the same folder, a loss that turns NaN. The kill-during-save test lives in
tests/test_faults_kill.py.
"""

import dataclasses
import json
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from conftest import voc_palette
from PIL import Image

import eaviz.data.cifar as cifar
from eaviz import cli
from eaviz._checks import check_images
from eaviz._io import atomic_save, atomic_write_text, claim_folder, read_checkpoint, remove_stale_temp_files
from eaviz.data import load_dataset
from eaviz.models import ClassifierConfig, build_model
from eaviz.paths import shipped
from eaviz.train import TrainConfig, TrainingDiverged, load_checkpoint, train

CHECKPOINTS = shipped("checkpoints")

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = ["--limit", "32", "--epochs", "1", "--batch-size", "16", "--dim", "16", "--depth", "1", "--memory-units", "4",
        "--device", "cpu"]  # fmt: skip
SMALL = ClassifierConfig(dim=16, depth=1, memory_units=4)


def fails(argv: list[str], capsys, code: int = 2) -> str:
    """Run the CLI, expect exit ``code`` and exactly one error line without a traceback; return it."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert exit_.value.code == code, err
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def dead_pid() -> int:
    """The id of a process that has just ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished 1-epoch CLI run on shapes (32 images)."""
    out = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    assert cli.main(["train", "shapes", *TINY, "--out", str(out)]) == 0
    return out


# --- numbers are checked where they enter ----------------------------------------------------


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "nan"], "argument --lr: expected a finite number, got 'nan'"),
        (["--lr", "inf"], "argument --lr: expected a finite number, got 'inf'"),
        (["--lr", "-1"], "argument --lr: expected lr to be a finite number > 0, got -1.0"),
        (["--limit", "0"], "argument --limit: expected an integer >= 1, got 0"),
        (["--limit", "-3"], "argument --limit: expected an integer >= 1, got -3"),
        (["--epochs", "0"], "argument --epochs: expected epochs to be an integer >= 1, got 0"),
        (["--epochs", "1.5"], "argument --epochs: expected an integer, got '1.5'"),
        (["--momentum", "1.5"], "argument --momentum: expected momentum to be a finite number >= 0 and < 1"),
        (["--ema", "1"], "argument --ema: expected ema_decay to be a finite number > 0 and < 1, got 1.0"),
        (["--warmup-epochs", "5", "--epochs", "2"], "argument --warmup-epochs: expected warmup_epochs"),
        (["--out", ""], "argument --out: expected a folder name, got an empty one"),
    ],
)
def test_bad_training_numbers_are_one_line_errors(flags, message, capsys):
    assert message in fails(["train", "shapes", *flags], capsys)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "attention", "--sizes", "-5"], "argument --sizes: expected an integer >= 1, got -5"),
        (["bench", "attention", "--sizes", "0"], "argument --sizes: expected an integer >= 1, got 0"),
        (["bench", "attention", "--min-run-time", "nan"], "argument --min-run-time: expected a finite number"),
        (["bench", "train", "--steps", "0"], "argument --steps: expected an integer >= 1, got 0"),
    ],
)
def test_bad_bench_numbers_are_one_line_errors(argv, message, capsys):
    assert message in fails(argv, capsys)


def test_bench_functions_refuse_sizes_and_steps_that_would_record_empty_rows():
    from eaviz.bench import bench_attention, bench_train

    with pytest.raises(ValueError, match="expected sizes to be an integer >= 1, got 0"):
        bench_attention([0], out=None, verbose=False)
    with pytest.raises(ValueError, match="expected steps to be an integer >= 1, got 0"):
        bench_train(["none"], steps=0, out=None, verbose=False)


def test_train_config_refuses_non_finite_numbers():
    for field, value in [("lr", float("nan")), ("weight_decay", float("inf")), ("label_smoothing", float("nan"))]:
        with pytest.raises(ValueError, match=f"expected {field} to be a finite number"):
            TrainConfig(**{field: value})
    with pytest.raises(TypeError, match="expected amp to be True or False"):
        TrainConfig(amp="yes")


def test_limit_zero_is_refused_by_the_cifar_loader(tmp_path):
    with pytest.raises(ValueError, match="expected limit to be an integer >= 1, got 0"):
        load_dataset("cifar10", "train", root=tmp_path, limit=0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_one_line_error_before_any_data_is_read(capsys):
    assert "torch sees no CUDA GPU here; use cpu or auto" in fails(["train", "cifar10", "--device", "cuda"], capsys)
    assert "no CUDA GPU" in fails(["eval", str(CHECKPOINTS / "cifar10-vit-external.pt"), "--device", "cuda"], capsys)


# --- broken files -----------------------------------------------------------------------------


class Payload:
    """An object that only full unpickling (which can run code) rebuilds: weights_only refuses it."""


@pytest.fixture
def broken(tmp_path, run):
    """A function that writes a broken checkpoint of a given kind and returns its path."""
    good = (run / "last.pt").read_bytes()

    def write(kind: str):
        path = tmp_path / f"{kind}.pt"
        if kind == "empty":
            path.write_bytes(b"")
        elif kind == "truncated":
            path.write_bytes(good[: len(good) // 2])
        elif kind == "random":
            path.write_bytes(np.random.default_rng(0).bytes(4096))
        elif kind == "pickle":
            path.write_bytes(pickle.dumps({"model": Payload}))
        elif kind == "objects":
            torch.save({"model": Payload(), "config": {}}, path)
        return path

    return write


@pytest.mark.parametrize(
    "kind, message",
    [
        ("empty", "is empty (was its save interrupted?)"),
        ("truncated", "is truncated or corrupt"),
        ("random", "is corrupt"),
        ("pickle", "is corrupt"),
        ("objects", "holds Python objects other than tensors and plain data"),
    ],
)
def test_broken_checkpoints_are_one_line_errors_that_never_advise_unsafe_loading(kind, message, broken, capsys):
    path = broken(kind)
    line = fails(["eval", str(path), "--device", "cpu"], capsys)
    assert message in line and str(path) in line and "weights_only" not in line
    assert "weights_only" not in fails(["train", "shapes", *TINY, "--resume", str(path)], capsys)


def test_missing_checkpoint_is_a_one_line_error(tmp_path, capsys):
    assert f"no checkpoint at {tmp_path / 'nope.pt'}" in fails(["eval", str(tmp_path / "nope.pt")], capsys)


def test_a_shipped_checkpoint_cannot_be_resumed_and_says_why(tmp_path, private_cache, capsys):
    write_cifar_folder(tmp_path)
    argv = ["train", "cifar10", "--resume", str(CHECKPOINTS / "cifar10-vit-external.pt"), "--data-root", str(tmp_path)]
    line = fails([*argv, "--batch-size", "4", "--device", "cpu"], capsys)
    assert "holds model weights only" in line and "cannot be resumed" in line


def test_a_corrupt_card_names_its_file(tmp_path, run, capsys):
    checkpoint = torch.load(run / "last.pt", weights_only=True)
    del checkpoint["dataset"]  # the dataset must come from the card beside it
    torch.save(checkpoint, tmp_path / "model.pt")
    (tmp_path / "model.json").write_text('{"dataset": "shapes",')
    assert f"{tmp_path / 'model.json'} is not valid JSON" in fails(["eval", str(tmp_path / "model.pt")], capsys)


def test_load_card_names_a_corrupt_file(tmp_path):
    import eaviz.pretrained as pretrained

    (tmp_path / "cifar10-vit-external.json").write_text("{not json")
    with pytest.raises(ValueError, match="cifar10-vit-external.json is not valid JSON"):
        pretrained.load_card("cifar10-vit-external", folder=tmp_path)


def write_cifar_folder(root, per_class=2):
    rng = np.random.default_rng(0)
    for name in cifar.CIFAR10_CLASSES:
        (root / "cifar10-train" / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
                root / "cifar10-train" / name / f"{i:04d}.png"
            )


@pytest.fixture
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar, "CACHE", tmp_path / "cache")
    monkeypatch.setitem(cifar.VAL_PER_CLASS, "cifar10", 1)
    return tmp_path / "cache"


def test_a_corrupt_tar_gz_is_a_one_line_error(tmp_path, private_cache, capsys):
    (tmp_path / "cifar10-train.tar.gz").write_bytes(b"\x1f\x8b\x08" + bytes(100))
    line = fails(["train", "cifar10", "--data-root", str(tmp_path), "--device", "cpu"], capsys)
    assert "could not read the archive" in line and "download it again" in line


def test_a_bad_mask_value_is_a_one_line_error(voc_root, capsys):
    mask = voc_root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2008_000000.png"
    labels = np.array(Image.open(mask))
    labels[labels == 1] = 50
    image = Image.frombytes("P", labels.shape[::-1], labels.tobytes())
    image.putpalette(voc_palette())
    image.save(mask)
    argv = ["train", "voc", "--data-root", str(voc_root), "--device", "cpu", "--batch-size", "2"]
    line = fails(argv, capsys)
    assert "2008_000000.png" in line and "[50]" in line


def test_training_targets_outside_the_classes_are_refused():
    data = load_dataset("shapes", "train", limit=32)
    data.targets[3] = 10
    with pytest.raises(ValueError, match=r"target values \[10\] outside 0..9"):
        train(build_model(SMALL), data, None, TrainConfig(epochs=1, batch_size=16), progress=False)


def test_notebooks_run_on_a_missing_file_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["notebooks", "run", str(tmp_path / "missing.ipynb")])
    err = capsys.readouterr().err
    assert exit_.value.code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "missing.ipynb" in err


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "eval", str(tmp_path / "nope.pt")])


# --- resume -----------------------------------------------------------------------------------


def test_resume_with_another_limit_is_refused_with_the_difference(run, tmp_path, capsys):
    argv = ["train", "shapes", *TINY, "--limit", "48", "--epochs", "1", "--resume", str(run / "last.pt")]
    line = fails([*argv, "--out", str(tmp_path)], capsys)
    assert "resume needs the training data the run started with" in line and "'size': (32, 48)" in line


@pytest.mark.parametrize("change, difference", [({"name": "cifar10"}, "'name': ('shapes', 'cifar10')"),
                                                ({"info": {"split": "val"}}, "'split': ('train', 'val')")])  # fmt: skip
def test_resume_on_other_data_is_refused(tmp_path, change, difference):
    data = load_dataset("shapes", "train", limit=32)
    config = TrainConfig(epochs=2, batch_size=16, device="cpu")
    train(build_model(SMALL), data, None, config, out=tmp_path, stop_after=1, progress=False)
    other = dataclasses.replace(data, **change)
    with pytest.raises(ValueError, match="training data") as error:
        train(build_model(SMALL), other, None, config, resume=tmp_path / "last.pt", progress=False)
    assert difference in str(error.value)


def test_resuming_a_finished_run_into_a_new_folder_says_so_and_writes_it(run, tmp_path, capsys):
    out = tmp_path / "new" / "deeper"
    code = cli.main(["train", "shapes", *TINY, "--resume", str(run / "last.pt"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0 and "is a finished run (1 of 1 epochs): nothing to do" in err
    assert json.loads((out / "last.json").read_text())["epochs"] == 1
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1


# --- the output folder ------------------------------------------------------------------------


def test_a_second_live_run_into_the_same_folder_is_refused(tmp_path, capsys):
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / ".lock").write_text(f"{os.uname().nodename}:{sleeper.pid}\n")
        line = fails(["train", "shapes", *TINY, "--out", str(tmp_path)], capsys)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert f"is in use by process {sleeper.pid}" in line and not (tmp_path / "last.pt").exists()


def test_a_stale_lock_is_taken_over_with_a_note(tmp_path, capsys):
    (tmp_path / ".lock").write_text(f"{os.uname().nodename}:{dead_pid()}\n")
    assert cli.main(["train", "shapes", *TINY, "--out", str(tmp_path)]) == 0
    assert "note: taking over" in capsys.readouterr().err
    assert (tmp_path / "last.pt").exists() and not (tmp_path / ".lock").exists()


def test_an_output_folder_that_cannot_be_created_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    line = fails(["train", "shapes", *TINY, "--out", str(tmp_path / "file" / "run")], capsys)
    assert "cannot write into the output folder" in line and "Not a directory" in line


def test_an_empty_output_folder_is_refused_by_the_api():
    with pytest.raises(ValueError, match="got an empty path"):
        train(build_model(SMALL), load_dataset("shapes", "train", limit=32), None, TrainConfig(), out="")


def test_temporary_files_of_a_killed_save_are_removed_at_the_next_start(tmp_path):
    leftover = tmp_path / f".last.pt.{dead_pid()}.0a1b2c3d.tmp"
    older = tmp_path / ".last.pt.k2j3h4_x.tmp"  # the name older versions gave them
    mine = tmp_path / f".last.pt.{os.getpid()}.0a1b2c3d.tmp"  # a live writer's file stays
    for path in (leftover, older, mine):
        path.write_bytes(b"half")
    with claim_folder(tmp_path):
        assert not leftover.exists() and not older.exists() and mine.exists()
    assert remove_stale_temp_files(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_are_created_with_the_users_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        atomic_save({"x": torch.zeros(1)}, tmp_path / "last.pt")
        atomic_write_text("{}", tmp_path / "last.json")
    finally:
        os.umask(old)
    for name in ("last.pt", "last.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask


# --- caches -----------------------------------------------------------------------------------


def cached_file(private_cache):
    (path,) = private_cache.glob("*.pt")
    return path


@pytest.mark.parametrize("damage", ["truncate", "version", "checksum"])
def test_a_damaged_cifar_cache_is_rebuilt(tmp_path, private_cache, damage):
    write_cifar_folder(tmp_path)
    first = load_dataset("cifar10", "train", root=tmp_path)
    path = cached_file(private_cache)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:100])
    else:
        saved = torch.load(path, weights_only=True)
        if damage == "version":
            saved["version"] = 1
        else:
            saved["labels"] = torch.zeros_like(saved["labels"])  # same checksum, other contents
        torch.save(saved, path)
    with pytest.warns(UserWarning, match="rebuilding the cache"):
        again = load_dataset("cifar10", "train", root=tmp_path)
    assert torch.equal(first.targets, again.targets) and torch.equal(first.images, again.images)
    assert torch.load(path, weights_only=True)["version"] == cifar.CACHE_VERSION


def test_an_intact_cache_is_read_without_a_warning(tmp_path, private_cache):
    write_cifar_folder(tmp_path)
    load_dataset("cifar10", "train", root=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("cifar10", "train", root=tmp_path)


# --- eval -------------------------------------------------------------------------------------


def test_eval_on_another_dataset_than_recorded_warns(run, tmp_path, private_cache, capsys):
    write_cifar_folder(tmp_path)
    code = cli.main(["eval", str(run / "last.pt"), "--dataset", "cifar10", "--data-root", str(tmp_path)])
    assert code == 0
    assert "was trained on shapes; evaluating it on cifar10" in capsys.readouterr().err


# --- a loss that stops being finite ------------------------------------------------------------


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    data = load_dataset("shapes", "train", limit=32)
    torch.manual_seed(0)
    model = build_model(SMALL)
    steps = []

    def poison(module, inputs, output):  # from the third step on (epoch 2), the logits are NaN
        steps.append(1)
        return output * float("nan") if len(steps) > 2 and module.training else output

    model.register_forward_hook(poison)
    config = TrainConfig(epochs=3, batch_size=16, device="cpu")
    with pytest.raises(TrainingDiverged, match=r"epoch 2: the loss became nan .* still holds epoch 1"):
        train(model, data, load_dataset("shapes", "val", limit=16), config, out=tmp_path, progress=False)
    saved = read_checkpoint(tmp_path / "last.pt")
    assert saved["epoch"] == 1 and all(torch.isfinite(v).all() for v in saved["model"].values())
    best, checkpoint = load_checkpoint(tmp_path / "best.pt")
    assert checkpoint["epoch"] == 1 and all(torch.isfinite(p).all() for p in best.parameters())


def test_a_diverging_cli_run_exits_1_without_saving(tmp_path, capsys):
    argv = ["train", "shapes", *TINY, "--lr", "1e30", "--warmup-epochs", "0", "--out", str(tmp_path)]
    line = fails(argv, capsys, code=1)
    assert "the loss became nan" in line and "nothing was saved" in line and "--lr" in line
    assert not (tmp_path / "last.pt").exists()


def test_best_checkpoint_holds_the_best_validation_epoch(tmp_path):
    torch.manual_seed(0)
    config = TrainConfig(epochs=3, batch_size=16, lr=3e-3, optimizer="adamw", device="cpu")
    history = train(build_model(SMALL), load_dataset("shapes", "train", limit=64),
                    load_dataset("shapes", "val", limit=32), config, out=tmp_path, progress=False)  # fmt: skip
    best_epoch = 1 + max(range(3), key=lambda i: (history["val_accuracy"][i], -i))
    _, checkpoint = load_checkpoint(tmp_path / "best.pt")
    assert checkpoint["epoch"] == best_epoch
    assert checkpoint["metrics"]["accuracy"] == max(history["val_accuracy"])


# --- images at the API's entry points -----------------------------------------------------------


def test_nan_images_are_refused_by_the_models_in_eval_mode():
    images = torch.rand(2, 3, 32, 32)
    images[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="expected images without NaN values, got 1 NaN values"):
        build_model(SMALL).eval()(images)


def test_float64_images_are_refused_with_the_fix():
    with pytest.raises(TypeError, match=r"got float64; .* pass images.float\(\)"):
        build_model(SMALL)(torch.rand(2, 3, 32, 32, dtype=torch.float64))
    with pytest.raises(TypeError, match="float64"):
        check_images(torch.rand(1, 3, 8, 8, dtype=torch.float64))
