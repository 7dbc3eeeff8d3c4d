"""Run profiles and the data a chapter gets in each of them."""

import pytest
import torch

import eaviz.data
from eaviz.profile import Profile, chapter_data, current_profile, describe_device


def test_profile_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("EAVIZ_PROFILE", "smoke")
    assert current_profile().pick(full=100, smoke=1) == 1
    monkeypatch.setenv("EAVIZ_PROFILE", "fast")
    with pytest.raises(ValueError, match="smoke"):
        current_profile()


def test_smoke_profile_uses_the_synthetic_stand_in_when_data_is_missing_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EAVIZ_DATA", str(tmp_path))
    data = chapter_data("cifar10", "val", profile=Profile("smoke"), limit=20)
    assert data.name == "shapes" and len(data) == 20
    assert "synthetic 'shapes'" in capsys.readouterr().out


def test_full_profile_downloads_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("EAVIZ_DATA", str(tmp_path))
    calls = []

    def fake_load(name, split, **kwargs):
        calls.append(kwargs.get("download", False))
        if not kwargs.get("download"):
            raise FileNotFoundError("no cifar10 data found")
        return "downloaded"

    monkeypatch.setattr(eaviz.data, "load_dataset", fake_load)
    assert chapter_data("cifar10", "train", profile=Profile("full")) == "downloaded"
    assert calls == [False, True]


def test_describe_device_counts_the_cpu_threads_in_good_english():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert describe_device("cpu") == "cpu (1 thread)"
        torch.set_num_threads(2)
        assert describe_device("cpu") == "cpu (2 threads)"
    finally:
        torch.set_num_threads(threads)
