"""Specs for eaviz.bench on tiny sizes: the shape of the results, the files, skipping, plotting."""

import json

import matplotlib
import pytest
import torch

from eaviz import bench
from eaviz.models import ClassifierConfig

matplotlib.use("Agg")

TINY = {"dim": 8, "memory_units": 4, "device": "cpu", "min_run_time": 0.001, "verbose": False}


@pytest.fixture(scope="module")
def attention_rows(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("results")
    rows = bench.bench_attention((16, 32), out=out, **TINY)
    return rows, out


def test_bench_attention_gives_one_row_per_size_and_mixer(attention_rows):
    rows, _ = attention_rows
    assert [(r["tokens"], r["mixer"]) for r in rows] == [
        (n, m) for n in (16, 32) for m in ("self", "self_fused", "external")
    ]
    assert all(r["dtype"] == "float32" and not r["skipped"] for r in rows)


def test_bench_attention_measures_time_and_memory_forward_and_backward(attention_rows):
    rows, _ = attention_rows
    for row in rows:
        for key in ("forward_ms", "forward_backward_ms", "forward_peak_mb", "forward_backward_peak_mb"):
            assert row[key] > 0, (row["mixer"], key)


def test_plain_self_attention_memory_grows_with_the_n_by_n_map(attention_rows):
    rows, _ = attention_rows
    peak = {(r["mixer"], r["tokens"]): r["forward_peak_mb"] for r in rows}
    map_mb = lambda n: n * n * 4 / 2**20  # noqa: E731 - one float32 N x N map
    assert peak[("self", 32)] - peak[("self", 16)] >= map_mb(32) - map_mb(16)


def test_bench_attention_writes_a_json_document_named_after_device_and_date(attention_rows):
    rows, out = attention_rows
    (path,) = out.glob("attention-*.json")
    document = json.loads(path.read_text())
    assert path.name == f"attention-{bench.device_slug(document['device'])}-{document['date']}.json"
    assert document["kind"] == "attention"
    assert document["results"] == rows
    assert {"name", "torch", "threads", "type"} <= set(document["device"])
    assert document["settings"]["sizes"] == [16, 32]


@pytest.fixture(scope="module")
def forward_only_rows():
    """Forward only, with a limit between the estimates of self-attention at N=16 (8 kB) and N=64 (57 kB)."""
    return bench.bench_attention((16, 64), max_memory_gb=40e3 / 1e9, out=None, backward=False, **TINY)


def test_bench_attention_skips_sizes_over_the_memory_limit_and_says_why(forward_only_rows):
    rows = forward_only_rows
    skipped = {(r["tokens"], r["mixer"]) for r in rows if r["skipped"]}
    assert skipped == {(64, "self")}
    (row,) = [r for r in rows if r["skipped"]]
    assert row["reason"] == "estimated 5.73e-05 GB > limit 4e-05 GB"
    assert "forward_ms" not in row


def test_bench_attention_without_backward_times_the_forward_only(forward_only_rows):
    measured = [r for r in forward_only_rows if not r["skipped"]]
    assert len(measured) == 5
    assert all("forward_ms" in r and "forward_backward_ms" not in r for r in measured)


def test_memory_estimate_is_quadratic_for_self_attention_and_linear_for_external():
    def estimate(mixer, n):
        return bench.estimate_attention_bytes(mixer, n, dim=8, memory_units=4, batch=1, itemsize=4, backward=True)

    assert estimate("self", 2048) > 3.5 * estimate("self", 1024)
    assert estimate("external", 2048) == 2 * estimate("external", 1024)
    assert estimate("self_fused", 2048) == 2 * estimate("self_fused", 1024)


def test_peak_memory_on_the_cpu_counts_a_temporary_that_is_freed_again():
    def make_and_drop():
        torch.empty(2**20, dtype=torch.uint8).fill_(1)  # 1 MiB, gone when the call returns

    assert bench.peak_memory_bytes(make_and_drop, torch.device("cpu")) >= 2**20


def test_measuring_cpu_memory_prints_nothing_to_stderr(capfd):
    bench.peak_memory_bytes(lambda: torch.ones(1000) + 1, torch.device("cpu"))
    bench.time_call(lambda: torch.ones(10) + 1, min_run_time=0.001)
    assert capfd.readouterr().err == ""  # no profiler start/stop notes, no "No CUDA runtime" warning


def test_bench_attention_rejects_an_unknown_dtype():
    with pytest.raises(ValueError, match=r"expected dtype to be one of \['bfloat16', 'float32'\], got 'float16'"):
        bench.bench_attention((16,), dtype="float16", out=None, **TINY)


def test_bench_attention_rejects_a_mixer_without_a_map():
    with pytest.raises(ValueError, match="expected mixers with an attention map to compare, got 'none'"):
        bench.bench_attention((16,), mixers=("external", "none"), out=None, **TINY)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_bench_attention_asks_for_a_device_the_machine_has():
    with pytest.raises(ValueError, match="CUDA is not available"):
        bench.bench_attention((16,), out=None, **{**TINY, "device": "cuda"})


def test_attention_ratios_divide_external_by_self_attention(attention_rows):
    rows, _ = attention_rows
    (ratio, _) = bench.attention_ratios(rows)
    found = {r["mixer"]: r for r in rows if r["tokens"] == 16}
    assert ratio["tokens"] == 16
    expected = found["external"]["forward_backward_ms"] / found["self"]["forward_backward_ms"]
    assert ratio["time_vs_self"] == pytest.approx(expected)
    expected = found["external"]["forward_backward_peak_mb"] / found["self_fused"]["forward_backward_peak_mb"]
    assert ratio["memory_vs_self_fused"] == pytest.approx(expected)


def test_attention_ratios_are_none_where_self_attention_was_skipped():
    rows = [
        {"tokens": 8, "dtype": "float32", "mixer": "external", "skipped": False, "forward_ms": 1, "forward_peak_mb": 1},
        {"tokens": 8, "dtype": "float32", "mixer": "self", "skipped": True},
    ]
    assert bench.attention_ratios(rows)[0]["time_vs_self"] is None


def test_attention_table_is_markdown_with_a_row_per_case_and_ratios(attention_rows):
    rows, _ = attention_rows
    table = bench.format_attention_table(rows)
    assert table.count("| EA |") == 2
    assert "| N | time EA / SA plain |" in table


def test_attention_table_writes_plain_numbers_a_reader_can_compare():
    row = {"tokens": 16384, "dtype": "float32", "mixer": "self", "label": "self-attention (plain)",
           "skipped": False, "forward_ms": 7660.0, "forward_backward_ms": 17912.4,
           "forward_peak_mb": 2060.1, "forward_backward_peak_mb": 0.4372}
    table = bench.format_attention_table([row])
    assert "| 16,384 | SA\u00a0plain | 7,660 | 17,912 | 2,060 | 0.437 |" in table
    assert "e+" not in table


def test_attention_table_keeps_each_mixer_name_on_one_line(attention_rows):
    rows, _ = attention_rows
    table = bench.format_attention_table(rows)
    assert "| SA\u00a0fused |" in table  # a non-breaking space: a narrow column cannot wrap it
    assert "| SA fused |" not in table


def test_load_results_reads_the_latest_file_of_a_kind(tmp_path):
    for created in ("2026-01-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00", "2026-02-01T00:00:00+00:00"):
        document = {"kind": "attention", "created": created, "device": {"type": "cpu"}, "results": []}
        (tmp_path / f"attention-cpu-{created[:10]}.json").write_text(json.dumps(document))
    assert bench.load_results("attention", root=tmp_path)["created"].startswith("2026-03-01")


def test_load_results_can_keep_one_kind_of_device(tmp_path):
    for device, created in (("cuda", "2026-01-01"), ("cpu", "2026-02-01")):
        document = {"kind": "attention", "created": created, "device": {"type": device}, "results": []}
        (tmp_path / f"attention-{device}-{created}.json").write_text(json.dumps(document))
    assert bench.load_results("attention", device="cuda", root=tmp_path)["device"]["type"] == "cuda"


def test_load_results_says_how_to_make_missing_results(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no train benchmark results in .*python -m eaviz bench train"):
        bench.load_results("train", root=tmp_path)


def test_load_results_rejects_an_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match=r"expected kind to be one of \('attention', 'train'\), got 'speed'"):
        bench.load_results("speed", root=tmp_path)


def test_plot_attention_bench_draws_time_and_memory_on_log_axes(attention_rows):
    _, out = attention_rows
    fig = bench.plot_attention_bench(bench.load_results("attention", root=out))
    time_axes, memory_axes = fig.axes
    assert time_axes.get_xscale() == time_axes.get_yscale() == "log"
    assert memory_axes.get_ylabel() == "forward + backward peak memory (MiB)"
    assert list(time_axes.get_xticks()) == [16, 32]  # the measured N
    (legend,) = fig.legends  # one legend for both panels: three mixers and two guides
    assert len(legend.get_texts()) == 5


def test_plot_attention_bench_starts_the_guides_below_every_curve(attention_rows):
    _, out = attention_rows
    fig = bench.plot_attention_bench(bench.load_results("attention", root=out))
    for ax in fig.axes:
        *curves, linear, quadratic = ax.get_lines()
        lowest_first_point = min(line.get_ydata()[0] for line in curves)
        assert linear.get_ydata()[0] == quadratic.get_ydata()[0] == lowest_first_point / 2


def test_plot_attention_bench_labels_more_than_the_powers_of_ten():
    rows = [{"tokens": n, "dtype": "float32", "mixer": "external", "label": "external attention",
             "skipped": False, "forward_ms": ms, "forward_peak_mb": 1.0}
            for n, ms in ((16, 1.0), (64, 30.0))]
    fig = bench.plot_attention_bench(rows)
    time_axes = fig.axes[0]
    ticks = [t for t in time_axes.get_yticks() if 1.0 / 2 <= t <= 30.0]
    assert [time_axes.yaxis.get_major_formatter()(t) for t in ticks] == ["0.5", "1", "2", "5", "10", "20"]


def test_plot_attention_bench_takes_a_title():
    rows = [{"tokens": 16, "dtype": "float32", "mixer": "external", "label": "external attention",
             "skipped": False, "forward_ms": 1.0, "forward_peak_mb": 1.0}]
    fig = bench.plot_attention_bench(rows, title="live run")
    assert fig._suptitle.get_text() == "live run"


def test_bench_train_reports_images_per_second_per_mixer(tmp_path):
    base = ClassifierConfig(dim=16, depth=1, heads=2, memory_units=4)
    rows = bench.bench_train(
        ("none", "external"), batch_size=4, steps=2, warmup_steps=1, base=base, device="cpu", out=tmp_path,
        verbose=False,
    )  # fmt: skip
    assert [r["mixer"] for r in rows] == ["none", "external"]
    assert all(r["images_per_s"] == pytest.approx(4 / (r["step_ms"] / 1e3)) for r in rows)
    assert rows[1]["params"] == rows[0]["params"] + 2 * 16 * 4  # external attention adds M_k and M_v
    (path,) = tmp_path.glob("train-*.json")
    assert json.loads(path.read_text())["results"] == rows


def test_device_slug_is_a_safe_file_name_part():
    assert bench.device_slug({"type": "cuda", "name": "NVIDIA H100 80GB HBM3"}) == "cuda-nvidia-h100-80gb-hbm3"


def test_load_recorded_reads_the_shipped_mixer_comparison_and_names_the_choices():
    from eaviz.bench import load_recorded

    recorded = load_recorded("cifar10-mixers")
    assert {row["mixer"] for row in recorded["table"]} == {"external", "multihead_external", "self", "none"}
    assert all(len(row["seeds"]) >= 3 for row in recorded["table"])
    with pytest.raises(ValueError, match="cifar10-mixers"):
        load_recorded("attention-cpu")


def test_load_recorded_reads_the_shipped_voc_heads_runs():
    from eaviz.bench import load_recorded

    runs = load_recorded("voc-heads")["runs"]
    assert {run["head"] for run in runs} == {"external", "nonlocal", "none"}
    assert all(0 < run["miou_common"] < 1 and "background" in run["iou"] for run in runs)
