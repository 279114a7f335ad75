"""The ``dse`` command as a user runs it: a real subprocess, exit codes, one-line errors."""

import json
import subprocess
import sys

import pytest


def dse(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dse", *args], capture_output=True, text=True, timeout=300, **kwargs)


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
