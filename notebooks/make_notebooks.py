"""Write the results notebooks: ``python notebooks/make_notebooks.py [--execute]`` from the repository root.

The notebooks only import ``dse.results`` and call it; edit the cells here, not in the
.ipynb files, and rerun. Their first cell reads ``DSE_RESULTS_DIR`` so tests (and
users) can point them elsewhere without editing.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent
KERNEL = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
          "language_info": {"name": "python"}}


def parameters(source: str):
    return new_code_cell(source, metadata={"tags": ["parameters"]})


BROWSE = [
    parameters('import os\n\nRESULTS_DIR = os.environ.get("DSE_RESULTS_DIR", "results/pareto")  # a results folder'),
    new_markdown_cell(
        "# Browse one sweep\n\n"
        "Run from the repository root. `RESULTS_DIR` is a sweep's results folder (`results/NAME`, holding "
        "`sweep.yaml` and `study.journal`); set it above or through the `DSE_RESULTS_DIR` environment variable."
    ),
    new_code_cell("%matplotlib inline\nimport dse.results as dr"),
    new_markdown_cell("## Sweeps next to this one"),
    new_code_cell("dr.list_sweeps(os.path.dirname(os.path.abspath(RESULTS_DIR)))"),
    new_code_cell("results = dr.load(RESULTS_DIR)\nresults"),
    new_markdown_cell("## Trials\n\nOne row per trial; `status` and `reason` say why a trial stopped. "
                      "`results.trials` has every column (all `config.*` metaparameters and timings)."),
    new_code_cell("dr.overview(results.trials)"),
    new_markdown_cell("## Aggregated over seeds\n\nCompleted trials only: mean and spread of each configuration's repeats."),
    new_code_cell("summary = dr.aggregate(results.trials)\ndr.table(summary)"),
    new_markdown_cell(
        "## Differences, with their uncertainty\n\nEach value of the first swept parameter against its first value, the "
        "other parameters held equal: mean over seeds, the difference and its 95% Welch interval, and `within noise` "
        "where that interval contains zero. A sweep with one seed per configuration cannot say (`n/a`): draw no "
        "conclusion from it."
    ),
    new_code_cell(
        "param = results.params[0]\n"
        "dr.compare_to_baseline(results.trials, param, baseline=results.trials[param].dropna().iloc[0])"
    ),
    new_markdown_cell("## Pareto front\n\nAccuracy against model size; the front's trials are listed below the plot."),
    new_code_cell("dr.pareto(results.trials)"),
    new_code_cell("dr.overview(results.trials[dr.pareto_front(results.trials, results.objectives)])"),
    new_markdown_cell("## The best trial"),
    new_code_cell("best = dr.best(results.trials)\ndr.overview(results.trials.loc[[best.name]])"),
    new_code_cell('dr.trial_curves(results.curves, best["number"])'),
    new_code_cell("dr.learning_curves(results.curves)"),
    new_markdown_cell("## What mattered"),
    new_code_cell("dr.importance(results.trials)"),
    new_markdown_cell("## Every figure `dr.draw_all` would save for this sweep"),
    new_code_cell("for figure in dr.figures(results).values():\n    display(figure)"),
]

PAPER = [
    parameters(
        'import os\n\n'
        'RESULTS_DIR = os.environ.get("DSE_RESULTS_DIR", "results")  # the folder holding the sweeps\n'
        'SWEEPS = {"sr": "sr", "pct3x3": "pct3x3", "bypass": "bypass"}  # paper result -> sweep name'
    ),
    new_markdown_cell(
        "# The paper vs dse\n\n"
        "SqueezeNet's design-space results (Iandola et al. 2016: Figure 3a squeeze ratio, Figure 3b share of "
        "3x3 filters, Table 3 bypass; ImageNet) beside the sweeps `dse` ran. The datasets and budgets differ "
        "(Fashion-MNIST has 10 classes, so its top-5 is saturated and top-1 is compared), so compare the "
        "*changes against SqueezeNet's own setting* (`Δ`, percentage points), not the levels. Each measured "
        "change carries its 95% Welch interval over seeds and a `verdict` (`within noise` where the interval "
        "contains zero). A sweep that is missing is skipped with a note."
    ),
    new_code_cell("%matplotlib inline\nimport dse.results as dr"),
    new_code_cell(
        'sweeps, missing = dr.paper.load_sweeps(RESULTS_DIR, SWEEPS)\nprint("\\n".join(missing) or "all sweeps found")'
    ),
    new_markdown_cell("## Figure 3a: squeeze ratio (SR)"),
    new_code_cell('dr.paper.paper_table("sr")'),
    new_code_cell(
        'if "sr" in sweeps:\n'
        '    comparison = dr.paper.compare("sr", sweeps["sr"].trials)\n'
        '    display(comparison, dr.paper_comparison(comparison))\n'
        '    display(dr.metaparameter_sweep(dr.aggregate(sweeps["sr"].trials), "model.sr"))'
    ),
    new_markdown_cell("## Figure 3b: share of 3x3 expand filters (pct3x3)"),
    new_code_cell('dr.paper.paper_table("pct3x3")'),
    new_code_cell(
        'if "pct3x3" in sweeps:\n'
        '    comparison = dr.paper.compare("pct3x3", sweeps["pct3x3"].trials)\n'
        '    display(comparison, dr.paper_comparison(comparison))\n'
        '    display(dr.metaparameter_sweep(dr.aggregate(sweeps["pct3x3"].trials), "model.pct3x3"))'
    ),
    new_markdown_cell("## Table 3: bypass connections"),
    new_code_cell('dr.paper.paper_table("bypass")'),
    new_code_cell(
        'if "bypass" in sweeps:\n'
        '    comparison = dr.paper.compare("bypass", sweeps["bypass"].trials)\n'
        '    display(comparison, dr.paper_comparison(comparison))\n'
        '    display(dr.macro_comparison(dr.aggregate(sweeps["bypass"].trials), "model.bypass"))'
    ),
]


AXES = [
    parameters(
        'import os\n\n'
        'RESULTS_DIR = os.environ.get("DSE_RESULTS_DIR", "results")  # the folder holding the sweeps\n'
        'DEFAULT_POOLS = [0, 0.25, 0.5]  # the small stem\'s pool positions (SqueezeNet v1.1\'s)\n'
        'REFERENCE = {"num_fires": 8}  # the quarter-width network both families start from\n'
        '# Each shallower or deeper network, and the 8-module network of the same size.\n'
        'MATCHED = [({"num_fires": 4}, {"num_fires": 8, "base_e": 13, "incr_e": 13}),\n'
        '           ({"num_fires": 6}, {"num_fires": 8, "base_e": 22, "incr_e": 22}),\n'
        '           ({"num_fires": 12}, {"num_fires": 8, "base_e": 56, "incr_e": 56})]'
    ),
    new_markdown_cell(
        "# Depth and downsampling: the axes the paper did not sweep\n\n"
        "`sweeps/downsample.yaml` moves the three max pools from early to late at fixed widths (the paper's "
        "design strategy 3, argued but not measured); `sweeps/depth.yaml` compares fewer or more Fire modules "
        "with fewer or more filters at matched parameter counts. Differences carry their 95% Welch interval "
        "over seeds and a `verdict` (`within noise` where the interval contains zero). A sweep that is "
        "missing is skipped with a note."
    ),
    new_code_cell("%matplotlib inline\nimport dse.results as dr"),
    new_code_cell('sweeps, missing = dr.load_many(["downsample", "depth"], results_root=RESULTS_DIR)\n'
                  'print("\\n".join(f"skipping {name}: {why}" for name, why in missing.items()) or "all sweeps found")'),
    new_markdown_cell("## Downsampling late (strategy 3)\n\nAccuracy, MACs and batch-1 latency per pool placement; "
                      "each placement against the default."),
    new_code_cell(
        'if "downsample" in sweeps:\n'
        '    trials = sweeps["downsample"].trials\n'
        '    summary = dr.aggregate(trials)\n'
        '    display(dr.table(summary, "model.downsample_at", ["val_top1", "test_top1", "macs", "latency_ms"]))\n'
        '    display(dr.compare_to_baseline(trials, "model.downsample_at", DEFAULT_POOLS, "test_top1"))\n'
        '    display(dr.tradeoff(summary, "model.downsample_at", "macs", "test_top1"))'
    ),
    new_markdown_cell("## Fewer Fire modules or fewer filters?\n\nEach depth against the 8-module network of the "
                      "same size (`diff` = depth's accuracy minus width's), then both families against size."),
    new_code_cell(
        'if "depth" in sweeps:\n'
        '    trials = sweeps["depth"].trials\n'
        '    summary = dr.aggregate(trials)\n'
        '    display(dr.table(summary, "model", ["val_top1", "test_top1", "params", "macs"]))\n'
        '    display(dr.compare_pairs(trials, "model", MATCHED, "test_top1"))\n'
        '    series = {"4-12 modules, widths 32/32": [MATCHED[0][0], MATCHED[1][0], REFERENCE, MATCHED[2][0]],\n'
        '              "8 modules, widths 13-56": [MATCHED[0][1], MATCHED[1][1], REFERENCE, MATCHED[2][1]]}\n'
        '    display(dr.tradeoff(summary, "model", "params", "test_top1", series=series))'
    ),
]


def write(name: str, cells: list) -> Path:
    path = HERE / name
    notebook = new_notebook(cells=cells, metadata=KERNEL)
    for number, cell in enumerate(notebook.cells):
        cell.id = f"cell-{number}"  # stable ids: regenerating does not churn the files
    nbformat.validate(notebook)
    nbformat.write(notebook, path)
    return path


def execute(path: Path) -> None:
    """Run a notebook from the repository root and save it with its outputs, so readers see results."""
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(HERE.parent)}}).execute()
    nbformat.write(notebook, path)


if __name__ == "__main__":
    import sys

    for path in (write("browse_sweep.ipynb", BROWSE), write("paper_vs_dse.ipynb", PAPER),
                 write("design_axes.ipynb", AXES)):
        if "--execute" in sys.argv:  # on the committed results under results/
            execute(path)
        print(path)
