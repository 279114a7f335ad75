"""The ``dse`` command as a user runs it: a real subprocess, exit codes, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_dse


def dse(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return run_dse(*args, **kwargs)


def test_arch_table_for_squeezenet1_0_shows_table1_rows_and_total():
    result = dse("arch", "--preset", "squeezenet1_0", "--num-classes", "1000")
    assert result.returncode == 0, result.stderr
    for fragment in ["111x111x96", "55x55x128", "13x13x1000", "11,920", "197,184", "513,000", "1,248,424", "4.76 MB"]:
        assert fragment in result.stdout


def test_arch_json_from_metaparameter_options():
    result = dse("arch", "--base-e", "64", "--incr-e", "32", "--sr", "0.25", "--pct3x3", "0.75", "--bypass", "simple",
                 "--stem", "v1.1", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    fire2 = next(la for la in report["layers"] if la["name"] == "fire2")
    assert (fire2["squeeze"], fire2["expand1x1"], fire2["expand3x3"]) == (16, 16, 48)
    assert report["params"] == sum(la["params"] for la in report["layers"])


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--sr", "1.5"], "sr=1.5: squeeze ratio must be in (0, 1]"),
        (["--pct3x3", "2"], "pct3x3=2.0: must be in [0, 1]"),
        (["--base-e", "-3"], "base_e=-3"),
        (["--freq", "0"], "freq=0"),
        (["--incr-e", "-1"], "incr_e=-1"),
        (["--stem", "v9"], "stem"),
        (["--preset", "squeezenet1_1", "--input-shape", "20,20,3"], "too small for the pooling chain"),
        (["--input-shape", "20x20"], "--input-shape"),
        (["--base-e", "64", "--incr-e", "32", "--freq", "1", "--bypass", "simple"], "bypass=simple"),
    ],
)
def test_arch_bad_input_is_one_line_exit_2(args, fragment):
    result = dse("arch", *args)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


NOT_UTF8 = {"latin-1": b"name: caf\xe9\n", "binary": bytes(range(256)) * 4, "nul": b"name: x\x00\n"}
# `dse train` imports JAX (2-3 s a run): the fast tier reads one bad file through it, the full suite all three.
NOT_UTF8_CASES = [pytest.param(["sweep", "validate"], content, id=f"validate-{name}") for name, content in NOT_UTF8.items()] + [
    pytest.param(["train"], content, id=f"train-{name}", marks=() if name == "binary" else pytest.mark.slow)
    for name, content in NOT_UTF8.items()]


@pytest.mark.parametrize("command, content", NOT_UTF8_CASES)
def test_a_file_that_is_not_utf8_text_is_one_line_exit_2(tmp_path, command, content):
    path = tmp_path / "file.yaml"
    path.write_bytes(content)
    result = dse(*command, str(path))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"dse: error: {path}: not ") and len(result.stderr.strip().splitlines()) == 1


def test_dse_arch_imports_no_jax_orbax_or_grain():
    code = ("import sys; sys.argv = ['dse', 'arch', '--json']; from dse import cli\n"
            "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('jax', 'orbax', 'grain', 'optuna') if m in sys.modules), file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert json.loads(result.stdout)["params"] == 1248424 and result.stderr.strip() == "[]"


def _crash(monkeypatch, tmp_path, *argv: str) -> SystemExit:
    """Run ``dse arch`` in process with the analytics broken, as an unexpected bug would."""
    from dse import cli
    from dse.arch import analytics

    def broken(spec):
        raise RuntimeError("analytics exploded\nsecond line")

    monkeypatch.setattr(analytics, "summarize", broken)
    monkeypatch.setattr(sys, "argv", ["dse", *argv, "arch"])
    monkeypatch.setattr(cli, "_session", cli._Session(debug=False))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    return exit_.value


def test_an_unexpected_error_is_one_line_naming_its_log_and_exit_1(monkeypatch, tmp_path, capsys):
    assert _crash(monkeypatch, tmp_path).code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("dse: internal error: RuntimeError: analytics exploded (traceback in ")
    log = Path(err.split("traceback in ", 1)[1].split(";", 1)[0])
    assert log.parent == tmp_path and "Traceback" in log.read_text() and "analytics exploded" in log.read_text()


def test_debug_prints_the_traceback_instead(monkeypatch, tmp_path, capsys):
    assert _crash(monkeypatch, tmp_path, "--debug").code == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RuntimeError: analytics exploded" in err
    assert not list(tmp_path.glob("dse-crash-*.log"))


def test_the_crash_log_goes_to_the_run_folder(monkeypatch, tmp_path):
    from dse import cli

    monkeypatch.setattr(cli, "_session", cli._Session())
    monkeypatch.setattr(sys, "argv", ["dse", "train", "--workdir", str(tmp_path / "run")])
    cli._crash_log_in(tmp_path / "run" / "crash.log")
    try:
        raise ValueError("boom")
    except ValueError:
        assert cli._write_crash_log() == tmp_path / "run" / "crash.log"
    assert "ValueError: boom" in (tmp_path / "run" / "crash.log").read_text()


@pytest.mark.slow  # trains a small run first (11 s)
def test_compress_and_evaluate_bad_input_is_one_line_exit_2(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text((Path(__file__).parents[1] / "results/fashion_mnist_small/config.json").read_text())
    garbage = tmp_path / "model.dsez"
    garbage.write_bytes(b"DSEZ" + bytes(40))
    cases = [
        (["compress", str(tmp_path / "nowhere")], "no config.json"),
        (["compress", str(run)], "no checkpoint"),
        (["compress", str(run), "--sparsity", "1.0"], "sparsity: Input should be less than 1"),
        (["compress", str(run), "--bits", "9"], "bits: Input should be less than or equal to 8"),
        (["compress", str(run), "--scope", "everywhere"], "scope: Input should be"),
        (["compress", str(run), "--set", "kmeans=3"], "kmeans: unknown key"),
        (["evaluate", str(garbage)], str(garbage)),
        (["evaluate", str(tmp_path / "missing.dsez")], "missing.dsez"),
    ]
    for args, fragment in cases:
        result = dse(*args)
        assert result.returncode == 2, (args, result.stderr)
        assert fragment in result.stderr and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert sorted(p.name for p in run.iterdir()) == ["config.json"]  # nothing written


@pytest.mark.parametrize("command", [["train"], ["sweep", "run", "sweeps/quickstart.yaml"]])
def test_a_device_count_that_is_not_a_number_is_one_line_exit_2(command):
    out = run_dse(*command, env={"JAX_NUM_CPU_DEVICES": "two"})
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip() == ("dse: error: JAX_NUM_CPU_DEVICES='two': not a whole number of CPU devices "
                                  "(1 turns the split over cores off)")


def test_status_of_a_sweep_not_started_is_one_line_and_creates_nothing(tmp_path):
    sweep = tmp_path / "later.yaml"
    sweep.write_text("name: later\nspace: {model.sr: {values: [0.25, 0.5]}}\nsampler: {name: grid}\n")
    results = tmp_path / "results"
    (results / "later").mkdir(parents=True)
    (results / "later" / "sweep.yaml").write_text(sweep.read_text())
    out = run_dse("sweep", "status", sweep, "--results-root", results)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        f"dse: error: {results / 'later'}: no study.journal yet (dse sweep run starts the study)"]
    assert sorted(p.name for p in (results / "later").iterdir()) == ["sweep.yaml"]  # no journal, no enqueued grid


def test_dashboard_serves_the_study_on_loopback(tmp_path):
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    import optuna

    folder = tmp_path / "sr"
    folder.mkdir()
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(folder / "study.journal")))
    optuna.create_study(study_name="sr", storage=storage).optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "dse", "dashboard", str(folder), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, studies = time.time() + 60, None
        while studies is None:
            assert server.poll() is None and time.time() < deadline, server.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as response:
                    studies = json.load(response)["study_summaries"]
            except OSError:
                time.sleep(0.5)
        assert [(s["study_name"], s["directions"]) for s in studies] == [("sr", ["minimize"])]
    finally:
        server.terminate()
        server.wait(timeout=30)
    missing = run_dse("dashboard", tmp_path / "nothing", "--port", str(port))
    assert missing.returncode == 2 and "no study.journal here" in missing.stderr
