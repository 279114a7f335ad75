"""The results layer on a real journal study laid out as sweep workers leave it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from results_fixture import build_sweep, final_accuracy

import dse.results as dr
from dse.errors import DseError

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """sr x bypass x 2 seeds (SR 1.0 infeasible, one trial pruned), plus the paper's sr and bypass sweeps."""
    root = tmp_path_factory.mktemp("results")
    build_sweep(root, "sr_bypass")
    build_sweep(root, "sr", space={"model.sr": [0.125, 0.25, 0.5, 0.75]}, max_size_mb=None, pruned=0)
    build_sweep(root, "bypass", space={"model.bypass": ["none", "simple", "complex"]}, max_size_mb=None, pruned=0)
    return root


@pytest.fixture(scope="module")
def results(root) -> dr.SweepResults:
    return dr.load("sr_bypass", results_root=root)


def test_load_makes_one_row_per_trial_with_params_config_and_metrics(results):
    trials = results.trials
    assert results.name == "sr_bypass" and results.params == ["model.sr", "model.bypass", "seed"]
    assert [o["metric"] for o in results.objectives] == ["val_top1", "model_size_mb"]
    assert len(trials) == 16 and trials["number"].tolist() == list(range(16))
    assert trials["status"].value_counts().to_dict() == {"completed": 11, "infeasible": 4, "pruned": 1}
    assert set(trials.loc[trials["status"] == "infeasible", "state"]) == {"FAIL"}
    assert trials.loc[trials["status"] == "infeasible", "reason"].str.startswith("model_size_mb=0.3558 > max 0.3").all()
    for column in ["seed", "model.sr", "model.bypass", "config.sr", "config.pct3x3", "config.stem", "config.batch_norm",
                   "val_top1", "test_top1", "params", "model_size_mb", "macs", "latency_ms", "duration_s", "worker"]:
        assert column in trials, column
    assert str(trials["seed"].dtype) == "Int64" and set(trials["seed"]) == {42, 43}
    assert (trials["config.sr"] == trials["model.sr"]).all()
    infeasible = trials[trials["status"] == "infeasible"]
    assert infeasible["model_size_mb"].notna().all() and infeasible["val_top1"].isna().all()  # static metrics only
    first = trials.iloc[0]
    assert first["val_top1"] == pytest.approx(final_accuracy({"sr": 0.125, "pct3x3": 0.5, "bypass": "none"}, 0))
    assert first["duration_s"] > 0 and first["datetime_complete"] > first["datetime_start"]
    assert trials.attrs["caption"] == "sweep sr_bypass: fashion_mnist, 4 epochs per trial, 2 seeds per configuration"


def test_curves_are_long_with_history_and_params(results):
    curves = results.curves
    assert len(curves) == 11 * 4 + 2  # completed trials x 4 epochs, the pruned one stopped after 2
    pruned = curves[curves["status"] == "pruned"]
    assert pruned["epoch"].tolist() == [1, 2] and set(pruned["model.sr"]) == {0.5}
    for column in ["number", "epoch", "seed", "model.bypass", "train_loss", "val_top1", "learning_rate", "images"]:
        assert column in curves, column
    assert not curves.duplicated(["number", "epoch"]).any()


def test_missing_folder_journal_or_study_is_a_one_line_dse_error(root, tmp_path):
    (tmp_path / "empty").mkdir()
    journal = root / "sr" / "study.journal"
    cases = [
        (lambda: dr.load("nope", results_root=root), "no such results folder"),
        (lambda: dr.load(tmp_path / "empty"), "no study.journal"),
        (lambda: dr.load("other", results_root=tmp_path, storage=str(journal)), "no study named 'other' (studies found: sr)"),
        (lambda: dr.load("x", results_root=tmp_path, storage=f"sqlite:///{tmp_path}/no/such/dir/db.sqlite3"), "cannot read"),
    ]
    for call, fragment in cases:
        with pytest.raises(DseError) as err:
            call()
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_storage_override_reads_a_database_copy(root, tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    source = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(root / "bypass" / "study.journal")))
    optuna.copy_study(from_study_name="bypass", from_storage=source, to_storage=url)
    copied = dr.load("bypass", results_root=tmp_path, storage=url)
    original = dr.load(root / "bypass")
    assert copied.sweep["name"] == "bypass" and copied.directory == tmp_path / "bypass"
    pd.testing.assert_series_equal(copied.trials["val_top1"], original.trials["val_top1"])


def test_aggregate_groups_seeds_of_completed_trials(results):
    agg = dr.aggregate(results.trials)
    assert list(agg.columns[:3]) == ["model.sr", "model.bypass", "trials"]
    assert len(agg) == 6  # 3 feasible SR values x 2 bypass; infeasible SR 1.0 has no completed trial
    row = agg[(agg["model.sr"] == 0.25) & (agg["model.bypass"] == "simple")].iloc[0]
    expected = [final_accuracy({"sr": 0.25, "pct3x3": 0.5, "bypass": "simple"}, seed) for seed in (0, 1)]
    assert row["trials"] == 2 and row["val_top1_count"] == 2
    assert row["val_top1_mean"] == pytest.approx(np.mean(expected))
    assert row["val_top1_std"] == pytest.approx(np.std(expected, ddof=1))
    assert agg.loc[(agg["model.sr"] == 0.5) & (agg["model.bypass"] == "simple"), "trials"].item() == 1  # one was pruned
    by_bypass = dr.aggregate(results.trials, by=["model.bypass"])
    assert by_bypass["trials"].tolist() == [6, 5]
    assert dr.aggregate(results.trials, by=[])["trials"].tolist() == [11]


def test_pareto_front_on_hand_made_points():
    points = pd.DataFrame({
        "state": ["COMPLETE"] * 6 + ["PRUNED", "COMPLETE"],
        "acc": [0.90, 0.80, 0.70, 0.90, 0.85, 0.85, 0.99, np.nan],
        "mb": [5.0, 1.0, 2.0, 6.0, 3.0, 3.0, 0.1, 0.1],
    })
    # 0 and 1 trade off; 2 is beaten by 1; 3 by 0; 4 and 5 tie (neither dominates the other);
    # 6 would dominate everything but was pruned; 7 has no accuracy.
    expected = [True, True, False, False, True, True, False, False]
    objectives = [{"metric": "acc", "goal": "maximize"}, {"metric": "mb", "goal": "minimize"}]
    assert dr.pareto_front(points, objectives).tolist() == expected
    assert dr.pareto_front(points, [("acc", "maximize"), ("mb", "minimize")]).tolist() == expected
    flipped = dr.pareto_front(points, {"acc": "minimize", "mb": "maximize"}).tolist()
    assert flipped == [False, False, True, True, True, True, False, False]
    three = points.assign(ms=[1.0, 9.0, 0.5, 1.0, 9.0, 9.0, 1.0, 1.0])
    three_goals = {"acc": "maximize", "mb": "minimize", "ms": "minimize"}
    assert dr.pareto_front(three, three_goals).tolist()[:4] == [True, True, True, False]  # 2 is now the fastest
    with pytest.raises(DseError, match="goal must be"):
        dr.pareto_front(points, {"acc": "up"})


def test_pareto_front_of_the_study_trades_accuracy_for_size(results):
    front = results.trials[dr.pareto_front(results.trials, results.objectives)]
    assert set(front["status"]) == {"completed"}
    assert front["model.bypass"].eq("simple").all() and sorted(front["model.sr"]) == [0.125, 0.25, 0.5]


def test_hypervolume_over_time_steps_up_to_the_study_front_at_each_completion(results):
    trials, reference = results.trials, (0.0, 10.0)
    curve = dr.hypervolume_over_time(trials, results.objectives, reference)
    assert curve.iloc[-1] > 0
    assert curve.iloc[-1] == pytest.approx(dr.hypervolume(trials, results.objectives, reference))
    assert curve.is_monotonic_increasing and curve.index.is_monotonic_increasing and curve.iloc[0] == 0.0
    start = trials["datetime_start"].min()
    for minutes in curve.index[1:]:  # each step is the front of the trials completed by then
        by_then = start + pd.Timedelta(minutes=minutes) + pd.Timedelta(microseconds=1)  # float minutes round
        done = trials[trials["datetime_complete"] <= by_then]
        assert dr.hypervolume_at(curve, minutes) == pytest.approx(dr.hypervolume(done, results.objectives, reference))
    assert dr.hypervolume_at(curve, 1e9) == curve.iloc[-1]


def test_a_candidate_suggested_again_is_one_front_point_of_two_trials(results):
    trials = results.trials
    front = trials[dr.pareto_front(trials, results.objectives)]
    again = pd.concat([trials, front.iloc[:1]], ignore_index=True)  # NSGA-II bred it again: it resumed its run
    again.attrs = trials.attrs
    legend = [t.get_text() for t in dr.pareto(again).axes[0].get_legend().get_texts()]
    assert f"Pareto front ({len(front)} points, {len(front) + 1} trials)" in legend
    assert f"Pareto front ({len(front)})" in [t.get_text() for t in dr.pareto(trials).axes[0].get_legend().get_texts()]


def test_export_writes_tables_that_round_trip(results, tmp_path):
    written = dr.export(results, tmp_path)
    assert sorted(p.name for p in written) == ["curves.csv", "curves.parquet", "summary.csv", "trials.csv", "trials.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "trials.parquet"), results.trials)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "curves.parquet"), results.curves)
    assert pd.read_parquet(tmp_path / "trials.parquet").attrs["params"] == results.params
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) == 6 and "val_top1_mean" in summary


def test_draw_all_saves_png_and_svg_of_figures_chosen_from_the_sweep(results, tmp_path):
    figures = dr.figures(results)
    assert set(figures) == {  # the stub measures latency, so its trials get a front against it too
        "sweep_model_sr", "compare_model_bypass", "pareto_size", "pareto_macs", "pareto_latency", "learning_curves",
        "importance"}
    for fig in figures.values():
        assert fig.get_suptitle() and "fashion_mnist, 4 epochs" in fig.get_supxlabel()
        plotted = [ax for ax in fig.axes if ax.axison]  # a Pareto plot's key panel has no axes drawn
        assert fig.axes[0].get_xlabel() and all(ax.get_ylabel() for ax in plotted)  # twin axes share the x label
    assert "(MB)" in figures["pareto_size"].axes[0].get_xlabel() and "(MMACs)" in figures["pareto_macs"].axes[0].get_xlabel()
    assert "(%)" in figures["pareto_size"].axes[0].get_ylabel()
    pareto_size = figures["pareto_size"]
    assert [t.get_text() for t in pareto_size.axes[0].texts] == ["1", "2", "3"]  # numbered, by size
    key = pareto_size.axes[1].texts[1].get_text().splitlines()
    assert [line.split("MB")[1].strip() for line in key] == ["sr=0.125 simple", "sr=0.25 simple", "sr=0.5 simple"]
    written = dr.draw_all(results, tmp_path / "plots")
    assert len(written) == 2 * len(figures) and all(p.stat().st_size > 1000 for p in written)
    assert {p.suffix for p in written} == {".png", ".svg"}


def test_one_parameter_sweep_gets_no_pareto_but_says_why_there_is_no_importance(root):
    results = dr.load(root / "bypass")
    assert set(dr.figures(results)) == {"compare_model_bypass", "tradeoff_model_bypass", "pareto_size", "pareto_macs",
                                      "pareto_latency", "learning_curves"}
    text = [t.get_text() for t in dr.importance(results.trials).axes[0].texts]
    assert text == ["not computed: parameter importance needs 2 or more varied parameters; this sweep varies 1"]
    table = dr.table(dr.aggregate(results.trials), "model.bypass")
    assert list(table.index) == ["complex", "none", "simple"] and table.loc["simple", "val top-1 (%)"] == pytest.approx(87.65)


def test_importance_from_a_study_or_its_trials(root, results):
    importances = dr.param_importance(results.trials)
    assert set(importances.index) == {"model.sr", "model.bypass"} and importances.sum() == pytest.approx(1.0)
    study = optuna.load_study(study_name="sr_bypass", storage=optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(root / "sr_bypass" / "study.journal"))))
    assert dr.importance(study).axes[0].get_xlabel().startswith("importance (% of total")


def test_a_compression_sweep_draws_its_front_in_file_bytes_beside_float32(tmp_path):
    objectives = [{"metric": "val_top1_compressed", "goal": "maximize"}, {"metric": "compressed_bytes", "goal": "minimize"}]
    directory = build_sweep(tmp_path, "compress", space={"model.sr": [0.25, 0.5], "compress.bits": [4, 8]}, repeats=1,
                            pruned=0, max_size_mb=None, objectives=objectives, base={"compress": {"sparsity": 0.5}})
    results = dr.load(directory)
    assert results.trials["compressed_bytes"].notna().all() and results.trials["compression_ratio"].gt(1).all()
    figure = dr.figures(results)["pareto_compressed"]
    ax = figure.axes[0]
    assert ax.get_xlabel() == "compressed size (kB)" and ax.get_ylabel() == "val top-1, compressed (%)"
    assert ax.get_xscale() == "log" and "same models in float32" in [t.get_text() for t in ax.get_legend().get_texts()]


def test_pool_placements_and_linked_groups_are_compared_by_readable_labels_and_their_cost(tmp_path):
    """Moving the pools changes MACs, not parameters, so their comparison shows MACs;
    a swept group of settings is labelled by its settings, in natural order."""
    pools = build_sweep(tmp_path, "pools", space={"model.downsample_at": [[0.25, 0.5, 1], [0, 0.25, 0.5]]}, repeats=1,
                        pruned=0, max_size_mb=None)
    figure = dr.figures(dr.load(pools))["compare_model_downsample_at"]
    accuracy, cost = figure.axes
    assert [t.get_text() for t in accuracy.get_xticklabels()] == ["pools=0,0.25,0.5", "pools=0.25,0.5,1"]
    assert cost.get_ylabel().startswith("MACs") and "pareto_size" not in dr.figures(dr.load(pools))
    heights = [bar.get_height() for bar in cost.patches]
    assert heights[0] < heights[1]  # later pools, larger maps, more MACs
    groups = [{"num_fires": 10}, {"num_fires": 4}, {"num_fires": 8, "base_e": 13, "incr_e": 13}]
    depth = dr.load(build_sweep(tmp_path, "depth", space={"model": groups}, repeats=2, pruned=0, max_size_mb=None))
    figures = dr.figures(depth)
    figure = figures["compare_model"]
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["fires=4", "fires=8 base=13 incr=13", "fires=10"]
    assert figure.axes[1].get_ylabel() == "model size (MB)"
    tradeoff = figures["tradeoff_model"].axes[0]
    assert tradeoff.get_xlabel() == "model size (MB)" and len(tradeoff.texts) == 3
    # The stub's accuracy ignores depth and widths: equal means, an interval around zero.
    pairs = dr.compare_pairs(depth.trials, "model", [(groups[1], groups[2]), (groups[0], groups[1])])
    assert pairs["diff"].abs().max() < 1e-12 and (pairs["verdict"] == "within noise").all()
    assert pairs[["n_a", "n_b"]].to_numpy().tolist() == [[2, 2], [2, 2]]
    with pytest.raises(dr.ResultsError, match='model={"num_fires": 6}: no completed trial'):
        dr.compare_pairs(depth.trials, "model", [({"num_fires": 6}, groups[1])])


@pytest.mark.slow
def test_other_families_trained_beside_a_sweep_are_reference_markers_on_its_pareto_plots(tmp_path):
    """A baselines sweep on the same dataset puts its non-SqueezeNet points, labelled as papers name
    them, on every Pareto plot of its neighbours; its own SqueezeNet points are not references."""
    groups = [{"family": "resnet", "depth": 20}, {"family": "mobilenet_v1", "width_multiplier": 0.5}, {"sr": 0.25}]
    build_sweep(tmp_path, "baselines", space={"model": groups}, repeats=1, pruned=0, max_size_mb=None,
                base={"model": {"preset": "squeezenet_small", "batch_norm": True}})
    mine = dr.load(build_sweep(tmp_path, "sr_bypass"))
    references = dr.reference_points(mine)
    assert sorted(references["label"]) == ["MobileNet v1 0.5x", "ResNet-20"]
    assert (references["model_size_mb"] > 0).all() and references["val_top1"].notna().all()
    for stem in ("pareto_size", "pareto_macs", "pareto_latency"):
        axis = dr.figures(mine)[stem].axes[0]
        assert "other families (2)" in [t.get_text() for t in axis.get_legend().get_texts()], stem
        assert {"ResNet-20", "MobileNet v1 0.5x"} <= {t.get_text() for t in axis.texts}, stem
    cifar = tmp_path / "cifar"  # baselines trained on another dataset are no reference for this one
    build_sweep(cifar, "baselines", space={"model": groups}, repeats=1, pruned=0, max_size_mb=None,
                base={"model": {"preset": "squeezenet_small", "batch_norm": True}, "data": {"dataset": "cifar10"}})
    assert dr.reference_points(dr.load(build_sweep(cifar, "sr_bypass"))).empty


def test_a_sweep_that_has_only_started_still_draws(tmp_path):
    directory = build_sweep(tmp_path, "started", space={"model.sr": [1.0]}, running=True)
    results = dr.load(directory)
    assert results.trials["status"].tolist() == ["infeasible", "infeasible", "running"]
    assert dr.aggregate(results.trials).empty and results.curves.empty
    assert "learning_curves.png" in {p.name for p in dr.draw_all(results)}
    with pytest.raises(DseError, match="no completed trial"):
        dr.best(results.trials)


def test_paper_comparison_lines_up_changes_against_the_baseline(root):
    comparison = dr.paper.compare("bypass", dr.load(root / "bypass").trials)
    assert comparison["model.bypass"].tolist() == ["none", "simple", "complex"]  # the paper's order
    assert comparison["paper Δ (pp)"].tolist() == pytest.approx([0.0, 2.9, 1.3])
    assert comparison["measured Δ (pp)"].tolist() == pytest.approx([0.0, 1.0, 0.5])
    assert dr.paper_comparison(comparison).get_suptitle() == "Table 3 vs measured: change from vanilla"
    with pytest.raises(DseError, match="does not vary model.pct3x3"):
        dr.paper.compare("pct3x3", dr.load(root / "bypass").trials)


def test_every_comparison_carries_its_interval_and_says_within_noise(root):
    trials = dr.load(root / "bypass").trials
    table = dr.compare_to_baseline(trials, "model.bypass", "none").set_index("model.bypass")
    # Two seeds whose accuracies differ by 0.2 pp: simple's +1.0 pp is outside the noise,
    # complex's +0.5 pp is not (Welch, 2 degrees of freedom: +-0.61 pp).
    assert table["verdict"].to_dict() == {"complex": "within noise", "none": "baseline", "simple": "better"}
    assert table.loc["simple", "diff"] == pytest.approx(0.010)
    assert table.loc["simple", "high"] - table.loc["simple", "diff"] == pytest.approx(0.0061, abs=1e-4)
    assert (table["n"] == 2).all()
    comparison = dr.paper.compare("bypass", trials)
    assert comparison["verdict"].tolist() == ["baseline", "better", "within noise"]
    assert {"Δ 95% low", "Δ 95% high"} <= set(comparison.columns)
    one_seed = trials[trials["seed"] == 42]
    assert set(dr.compare_to_baseline(one_seed, "model.bypass", "none")["verdict"]) == {"baseline", "n/a (fewer than 2 seeds)"}


# --------------------------------------------------------------------------- notebooks


def execute(name: str, results_dir: Path, monkeypatch, tmp_path) -> nbformat.NotebookNode:
    """Run a notebook top to bottom from the repository root on this interpreter's kernel."""
    spec = KernelSpecManager().get_kernel_spec("python3")
    if spec.argv[0] not in ("python", "python3", sys.executable):  # jupyter_client maps "python" to sys.executable
        kernels = tmp_path / "jupyter" / "kernels" / "python3"
        kernels.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (kernels / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"}))
        monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("DSE_RESULTS_DIR", str(results_dir))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, kernel_name="python3", timeout=120, resources={"metadata": {"path": str(REPO)}}).execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]


@pytest.mark.slow
def test_browse_notebook_runs(results, monkeypatch, tmp_path):
    notebook = execute("browse_sweep.ipynb", results.directory, monkeypatch, tmp_path)
    images = [o for o in outputs(notebook) if "image/png" in o.get("data", {})]
    assert len(images) >= 10  # Pareto, best trial, curves, importance and every draw_all figure
    assert any("sr_bypass" in o.get("data", {}).get("text/plain", "") for o in outputs(notebook))


@pytest.mark.slow
def test_paper_notebook_runs_and_skips_a_missing_sweep(root, monkeypatch, tmp_path):
    notebook = execute("paper_vs_dse.ipynb", root, monkeypatch, tmp_path)
    printed = "".join(o.get("text", "") for o in outputs(notebook) if o["output_type"] == "stream")
    assert "skipping pct3x3 (Figure 3b)" in printed and "skipping sr" not in printed
    assert sum("image/png" in o.get("data", {}) for o in outputs(notebook)) == 4  # sr and bypass: comparison + sweep plot


@pytest.mark.slow
def test_design_axes_notebook_compares_placements_and_matched_depths(tmp_path, monkeypatch):
    groups = yaml.safe_load(Path("sweeps/depth.yaml").read_text())["space"]["model"]["values"]
    build_sweep(tmp_path, "depth", space={"model": groups}, repeats=2, pruned=0, max_size_mb=None)
    notebook = execute("design_axes.ipynb", tmp_path, monkeypatch, tmp_path)
    printed = "".join(o.get("text", "") for o in outputs(notebook) if o["output_type"] == "stream")
    assert "skipping downsample: " in printed
    tables = [o["data"]["text/html"] for o in outputs(notebook) if "text/html" in o.get("data", {})]
    assert len(tables) == 2 and "within noise" in tables[1]  # the stub's accuracy ignores depth and widths
    assert sum("image/png" in o.get("data", {}) for o in outputs(notebook)) == 1


def test_results_schemas_and_cli_import_without_jax():
    """Browsing results, validating sweeps and ``dse --help`` must not pay for JAX's import."""
    import subprocess

    code = "import sys, dse.results, dse.sweep.config, dse.arch.analytics, dse.cli; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ---- labels that read: a crowded front, no two labels on each other, all inside the figure ----
def _crowded_front(n: int = 24) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    size = np.geomspace(0.01, 1.2, n)  # a front packed into the small end, as SqueezeNets are
    front = pd.DataFrame({"model_size_mb": size, "val_top1": 0.80 + 0.1 * np.log10(size / 0.01) / 2.1,
                          "model.base_e": rng.choice([16, 32, 48, 64], n), "model.sr": rng.choice([0.125, 0.5, 1.0], n),
                          "model.bypass": rng.choice(["none", "simple", "complex"], n)})
    behind = front.assign(val_top1=front["val_top1"] - rng.uniform(0.02, 0.3, n))
    trials = pd.concat([front, behind], ignore_index=True).assign(status="completed", state="COMPLETE", macs=1.0)
    references = pd.DataFrame({"label": ["ResNet-20", "MobileNet v2 0.35x", "MobileNet v1 0.5x", "ShuffleNet v2 0.5x",
                                         "AlexNet 0.25x"],
                               "model_size_mb": [1.04, 1.55, 1.35, 3.1, 5.6], "val_top1": [0.88, 0.87, 0.84, 0.83, 0.71]})
    return trials, references


def _boxes(fig, texts):
    from dse.results.labels import label_boxes

    return label_boxes(fig, texts)


def test_a_crowded_fronts_labels_neither_overlap_nor_leave_the_figure():
    from matplotlib.text import Annotation

    trials, references = _crowded_front()
    fig = dr.pareto(trials, "model_size_mb", "val_top1", references=references, caption="a crowded front")
    ax = fig.axes[0]
    labels = [t for t in ax.texts if isinstance(t, Annotation)]
    assert len(labels) == 24 + 5  # a number per front point, a name per other family
    boxes = _boxes(fig, labels)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    frame = ax.get_window_extent(fig.canvas.get_renderer())
    for box in boxes:  # inside the axes, so inside the figure too
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1, box
    legend = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
    assert not any(box.overlaps(legend) for box in boxes)
    figure_box = fig.bbox
    for text in fig.axes[1].texts:  # the key beside the plot
        box = _boxes(fig, [text])[0]
        assert figure_box.x0 <= box.x0 and box.x1 <= figure_box.x1 and figure_box.y0 <= box.y0, box
    assert ax.get_xscale() == "log"  # 0.01 to 5.6 MB: more than 10x


def test_a_narrow_front_keeps_a_linear_axis():
    trials, _ = _crowded_front(6)
    trials["model_size_mb"] = np.linspace(0.5, 1.2, len(trials))
    assert dr.pareto(trials, "model_size_mb", "val_top1").axes[0].get_xscale() == "linear"
