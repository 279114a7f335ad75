"""Compressed files against the Fashion-MNIST benchmark: real runs, real compressions, the figure."""

import json

import pandas as pd
import pytest
from conftest import requires_fashion_mnist, run_dse, tiny_train_dict
from matplotlib.backends.backend_agg import FigureCanvasAgg

from dse.compress.pipeline import compress_run
from dse.results.benchmark import compressed_files, fashion_mnist_benchmark, front_vs_benchmark, over_seeds
from dse.results.labels import label_boxes
from dse.train import TrainConfig, train_and_evaluate


def test_the_benchmark_entries_are_the_reference_notes_numbers_at_4_bytes_a_parameter():
    entries = {entry.name: entry for entry in fashion_mnist_benchmark()}
    assert {name: entry.test_top1 for name, entry in entries.items()} == {
        "SqueezeNet": 90.0, "2-conv net": 92.5, "2 conv + pool + BN": 93.4, "ResNet-18": 94.9, "MobileNet": 95.0,
        "DenseNet-BC": 95.4, "WRN-40-4": 96.7}
    assert entries["2-conv net"].float32_bytes == 400_000 and entries["2-conv net"].at_most
    assert entries["2 conv + pool + BN"].float32_bytes is None
    # SqueezeNet v1.1 with a 10-class conv10 on one channel: v1.1's 1,235,496 less 1000-10 classes of
    # 513 weights, less 2 input channels of the 64 3x3 stem filters.
    assert entries["SqueezeNet"].params == 1_235_496 - 990 * 513 - 2 * 9 * 64


def test_seeds_of_one_candidate_are_one_point_with_their_range():
    files = pd.DataFrame({
        "config": ["a", "a", "b"], "name": ["p38", "p38", "p38"], "settings": ["s5", "s5", "s6"],
        "params": [1000] * 3, "epochs": [25] * 3, "seed": [42, 43, 42], "compressed_bytes": [90_000, 92_000, 120_000],
        "test_top1_compressed": [0.92, 0.93, 0.94], "float32_test_top1": [0.93, 0.94, 0.94]})
    rows = over_seeds(files)
    assert list(rows["config"]) == ["a", "b"]  # by bytes
    a = rows.iloc[0]
    assert (a["seeds"], a["compressed_bytes"], a["test_top1_compressed"]) == (2, 91_000, pytest.approx(0.925))
    assert (a["test_top1_compressed_min"], a["test_top1_compressed_max"]) == (0.92, 0.93)
    assert rows.iloc[1]["seeds"] == 1


@pytest.fixture(scope="module")
def compressions(tmp_path_factory):
    """Two seeds of one tiny run, each compressed, and seed 42 compressed again at other bits."""
    root, folders = tmp_path_factory.mktemp("runs"), []
    data = {"train_subset": 128, "val_subset": 64, "test_subset": 64}
    settings = {"sparsity": 0.5, "bits": 5, "max_steps_per_epoch": 2}
    for seed in (42, 43):
        run = root / f"tiny_s{seed}"
        train_and_evaluate(TrainConfig.model_validate(tiny_train_dict(epochs=1, max_steps_per_epoch=2, data=data,
                                                                      seed=seed)), run)
        compress_run(run, settings, run / "b5")
        folders.append(run / "b5")
    compress_run(root / "tiny_s42", {**settings, "bits": 3}, root / "tiny_s42" / "b3")
    return root, [*folders, root / "tiny_s42" / "b3"]


@requires_fashion_mnist
@pytest.mark.slow
def test_compressed_files_group_by_everything_but_the_seed(compressions):
    _, folders = compressions
    files = compressed_files(folders)
    reports = [json.loads((folder / "compress.json").read_text()) for folder in folders]
    assert list(files["compressed_bytes"]) == [r["compressed_bytes"] for r in reports]
    assert list(files["test_top1_compressed"]) == [r["test_top1_compressed"] for r in reports]
    assert list(files["seed"]) == [42, 43, 42] and set(files["name"]) == {"tiny"}
    rows = over_seeds(files).set_index("settings")
    five = rows.loc[rows.index.str.contains("5-bit convs")].iloc[0]
    assert five["seeds"] == 2
    assert five["test_top1_compressed"] == pytest.approx((reports[0]["test_top1_compressed"]
                                                          + reports[1]["test_top1_compressed"]) / 2)
    assert rows.loc[rows.index.str.contains("3-bit convs")].iloc[0]["seeds"] == 1


@requires_fashion_mnist
@pytest.mark.slow
def test_the_figure_labels_every_point_inside_the_axes(compressions):
    _, folders = compressions
    fig = front_vs_benchmark(over_seeds(compressed_files(folders)), fashion_mnist_benchmark())
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    labels = [text for text in ax.texts if text.get_text()]
    assert sorted(t.get_text() for t in labels)[:2] == ["1", "2"] and len(labels) == 2 + 6  # 6 sized entries
    frame = ax.get_window_extent()
    for box in label_boxes(fig, labels):
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1


@requires_fashion_mnist
@pytest.mark.slow
def test_dse_benchmark_writes_the_figure_and_refuses_a_folder_without_a_report(compressions, tmp_path):
    root, folders = compressions
    out = run_dse("benchmark", *folders, "--output", tmp_path / "fvb.png")
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "fvb.png").stat().st_size > 10_000 and "2-conv net" in out.stdout
    bad = run_dse("benchmark", root, "--output", tmp_path / "bad.png")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not a dse compress report" in bad.stderr
    assert not (tmp_path / "bad.png").exists()
