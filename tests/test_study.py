"""The small-study runner: its statistics against numpy/scipy, its verdicts on constructed cases, and a
real grid of tiny runs (parallel, cached, resumed after a kill)."""

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from mvit.engine import ConfigError
from mvit.engine.study import Results, Study, difference_interval, mean_interval, run_key, verdict

TINY = [
    "data.train_size=32",
    "data.val_size=16",
    "data.batch_size=8",
    "optim.epochs=2",
    "optim.warmup_epochs=0",
    "run.log_every_steps=1",
]


@pytest.mark.parametrize("values", [[71.0, 74.5, 69.0], [1.0, 2.0, 3.0, 4.0, 10.0], [5.0, 5.5]])
def test_mean_interval_matches_numpy_and_scipy(values):
    mean, std, low, high = mean_interval(values)
    assert mean == pytest.approx(np.mean(values))
    assert std == pytest.approx(np.std(values, ddof=1))
    ref = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert (low, high) == pytest.approx(ref)


def test_mean_interval_of_one_value_is_unknown():
    mean, std, low, high = mean_interval([3.0])
    assert mean == 3.0 and math.isnan(std) and math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError):
        mean_interval([])


@pytest.mark.parametrize(
    "a, b",
    [
        ([80.0, 82.0, 85.0], [60.0, 71.0, 66.0]),
        ([1.0, 2.0, 3.0], [0.0, 1.0, 5.0, 2.0]),
        ([10.0, 10.5], [9.0, 12.0, 11.0]),
    ],
)
def test_difference_interval_is_welchs(a, b):
    delta, low, high = difference_interval(a, b)
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert delta == pytest.approx(np.mean(a) - np.mean(b))
    assert (low, high) == pytest.approx((ref.low, ref.high))


def test_difference_interval_edge_cases():
    assert difference_interval([2.0, 2.0], [1.0, 1.0]) == (1.0, 1.0, 1.0)  # no spread at all
    delta, low, high = difference_interval([2.0], [1.0, 3.0])
    assert delta == 0.0 and math.isnan(low) and math.isnan(high)


@pytest.mark.parametrize(
    "low, high, paper, expected",
    [
        (1.0, 5.0, 9.9, "agrees"),
        (-5.0, -1.0, -2.0, "agrees"),
        (-5.0, -1.0, 9.9, "opposite"),
        (1.0, 5.0, -0.1, "opposite"),
        (-1.0, 5.0, 9.9, "inconclusive"),
        (0.0, 5.0, 9.9, "inconclusive"),
        (math.nan, math.nan, 9.9, "inconclusive"),
        (1.0, 2.0, 0.0, "differs"),
        (-1.0, 2.0, 0.0, "inconclusive"),
        (1.0, 2.0, None, "a > b"),
        (-2.0, -1.0, None, "a < b"),
        (-2.0, 1.0, None, "inconclusive"),
    ],
)
def test_verdict(low, high, paper, expected):
    assert verdict(low, high, paper) == expected


def _run(variant, seed, accs, status="done", test=None):
    epochs = [{"epoch": i, "val_top1": a, "val_loss": 1.0 / (1 + a)} for i, a in enumerate(accs)]
    return {
        "variant": variant,
        "seed": seed,
        "dir": f"/x/{variant}{seed}",
        "status": status,
        "epochs": epochs,
        "test": test,
        "wall_s": 1.0 + seed,
        "params": 10,
        "gmacs": 0.5,
        "peak_rss_mib": 100.0,
        "peak_cuda_mib": None,
        "clips_per_s": 50.0,
    }


def test_results_statistics_on_constructed_runs():
    runs = [
        _run("A", 0, [50, 80, 79]),
        _run("A", 1, [40, 85, 84]),
        _run("A", 2, [45, 81, 82]),
        _run("B", 0, [30, 60, 61], test={"top1": 58.0}),
        _run("B", 1, [35, 65, 62], test={"top1": 60.0}),
        _run("B", 2, [], status="diverged"),
    ]
    res = Results(runs)
    assert res.variants == ["A", "B"]
    np.testing.assert_array_equal(res.values("A"), [79, 84, 82])
    np.testing.assert_array_equal(res.values("A", "best_val_top1"), [80, 85, 82])
    np.testing.assert_array_equal(res.values("B", "test_top1"), [58, 60])
    np.testing.assert_array_equal(res.values("A", "wall_s"), [1, 2, 3])
    rows = {r["variant"]: r for r in res.summary()}
    assert rows["A"]["n"] == 3 and rows["B"]["n"] == 2 and rows["B"]["failed"] == 1
    assert rows["A"]["mean"] == pytest.approx(np.mean([79, 84, 82]))
    cmp = res.compare("A", "B", paper_delta=9.9)
    ref = stats.ttest_ind([79, 84, 82], [61, 62], equal_var=False).confidence_interval(0.95)
    assert (cmp.ci_low, cmp.ci_high) == pytest.approx((ref.low, ref.high))
    assert cmp.verdict == "agrees" and "agrees" in str(cmp)
    epochs, curves = res.curves("A")
    np.testing.assert_array_equal(epochs, [1, 2, 3])
    assert curves.shape == (3, 3) and curves[1, 1] == 85
    with pytest.raises(KeyError, match="multi-view"):
        res.values("A", "test_top1")
    with pytest.raises(KeyError, match="no variant"):
        res.values("C")


def test_study_refuses_bad_settings_before_running(tmp_path):
    with pytest.raises(ConfigError, match="optim.lrr"):
        Study("cpu_synthetic_mvit", {"A": ["optim.lrr=1"]}, seeds=(0,), root=tmp_path)
    with pytest.raises(ConfigError, match="folder"):
        Study("cpu_synthetic_mvit", {"a/b": []}, seeds=(0,), root=tmp_path)
    with pytest.raises(ConfigError, match="seed"):
        Study("cpu_synthetic_mvit", {"A": []}, seeds=(), root=tmp_path)


def test_run_key_follows_settings_not_paths(tmp_path):
    from mvit.engine import load_config

    a = load_config("cpu_synthetic_mvit", ["run.output_dir=/one", "run.progress=true"]).to_dict()
    b = load_config("cpu_synthetic_mvit", ["run.output_dir=/two", "run.progress=false"]).to_dict()
    c = load_config("cpu_synthetic_mvit", ["optim.lr=0.01"]).to_dict()
    assert run_key(a) == run_key(b) != run_key(c)
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_text("a.mp4 0\n")
    d = load_config("cpu_synthetic_mvit", [f"data.root={data}"]).to_dict()
    before = run_key(d)
    (data / "train.csv").write_text("a.mp4 1\n")  # same size, other contents
    assert run_key(d) != before


def test_study_runs_in_parallel_and_reads_results_back(tmp_path):
    variants = {"MViT": [], "ViT": ["model.name=vit_tiny"]}
    study = Study("cpu_synthetic_mvit", variants, seeds=(0, 1), root=tmp_path / "grid", overrides=TINY, workers=2)
    first = study.run()
    assert (first.trained, first.cached) == (4, 0)
    assert [(r["variant"], r["seed"]) for r in first.runs] == [("MViT", 0), ("MViT", 1), ("ViT", 0), ("ViT", 1)]
    for run in first.runs:
        assert run["status"] == "done" and len(run["epochs"]) == 2 and run["config"]["run"]["seed"] == run["seed"]
        assert run["params"] > 0 and run["gmacs"] > 0 and run["peak_rss_mib"] > 0 and run["wall_s"] > 0
    assert first.runs[0]["params"] != first.runs[2]["params"]  # the variants are different models
    stamps = {r["dir"]: os.stat(Path(r["dir"]) / "result.json").st_mtime_ns for r in first.runs}
    again = Study("cpu_synthetic_mvit", variants, seeds=(0, 1), root=tmp_path / "grid", overrides=TINY).run()
    assert (again.trained, again.cached) == (0, 4)
    assert {r["dir"]: os.stat(Path(r["dir"]) / "result.json").st_mtime_ns for r in again.runs} == stamps
    # the same runs in another order in another folder: the same numbers, bit for bit (which worker ran
    # which run, and what it ran before, changes nothing)
    other = Study(
        "cpu_synthetic_mvit",
        dict(reversed(variants.items())),
        seeds=(1, 0),
        root=tmp_path / "other",
        overrides=TINY,
        workers=2,
    ).run()
    for name in variants:
        np.testing.assert_array_equal(other.values(name, "val_loss")[::-1], first.values(name, "val_loss"))


def test_a_diverged_run_is_a_result(tmp_path):
    res = Study(
        "cpu_synthetic_mvit",
        {"huge lr": ["optim.lr=1e30", "optim.clip_grad_norm=null"]},
        seeds=(0,),
        root=tmp_path,
        overrides=TINY,
        workers=1,
    ).run()
    assert res.runs[0]["status"] == "diverged" and "is nan" in res.runs[0]["error"].lower()
    assert res.summary()[0]["failed"] == 1 and res.summary()[0]["n"] == 0


def test_a_killed_study_resumes_without_redoing_finished_runs(tmp_path):
    script = tmp_path / "grid.py"
    script.write_text(
        textwrap.dedent(f"""
        from mvit.engine.study import Study
        if __name__ == "__main__":
            res = Study("cpu_synthetic_mvit", {{"A": []}}, seeds=(0, 1, 2), root={str(tmp_path / "grid")!r},
                        overrides={TINY!r}, workers=1).run()
            print("trained", res.trained, "cached", res.cached)
    """)
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 240
    while not list((tmp_path / "grid").glob("*/result.json")):
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "no run finished in time"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "grid").glob("*/result.json")}
    assert 1 <= len(done) < 3
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"trained {3 - len(done)} cached {len(done)}" in out.stdout
    after = {p.parent.name: p.stat().st_mtime_ns for p in (tmp_path / "grid").glob("*/result.json")}
    assert len(after) == 3 and all(after[name] == stamp for name, stamp in done.items())
    for path in (tmp_path / "grid").glob("*/result.json"):
        assert json.loads(path.read_text())["status"] == "done"
