"""benchmarks/bench_table16.py: one row measured in-process on a tiny model, and its command-line errors."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_table16.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_table16", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rows_are_the_papers_models(bench):
    assert list(bench.ROWS) == ["ViT-B", "MViT-S, max", "MViT-S, conv", "MViT-B, max", "MViT-B, conv"]
    speeds = [paper for _, _, paper, _ in bench.ROWS.values()]
    assert speeds == [3.6, 12.3, 9.4, 6.3, 4.8]  # Table 16, clips/s on one M40


def test_one_row_measures_time_and_memory(bench, monkeypatch, one_thread):
    monkeypatch.setitem(bench.ROWS, "tiny", ("mvit_tiny", {"pool_mode": "max", "input_size": (4, 32, 32)}, 1.0, None))
    args = bench.parse_args(["--device", "cpu", "--warmup", "1", "--steps", "2", "--threads", "1", "--rows", "tiny"])
    row = bench.measure_one("tiny", args)
    assert args.batch == 1 and args.precision == "fp32"
    assert len(row["step_s"]) == 2 and all(t > 0 for t in row["step_s"])
    assert row["clips_per_s"] == pytest.approx(1 / row["median_step_s"])
    assert row["input"] == [4, 32, 32] and row["params"] > 0
    if sys.platform.startswith("linux"):
        assert 0 < row["step_peak_bytes"] <= row["process_peak_bytes"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rows", "ViT-L"], "unknown row"),
        (["--steps", "0"], "--steps"),
        (["--device", "cuda"], "no CUDA device"),
    ],
)
def test_user_mistakes_give_one_error_line(argv, message):
    import torch

    if argv == ["--device", "cuda"] and torch.cuda.is_available():
        pytest.skip("a CUDA device is available, so --device cuda is no mistake here")
    done = subprocess.run([sys.executable, str(SCRIPT), *argv], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and message in done.stderr and "Traceback" not in done.stderr
