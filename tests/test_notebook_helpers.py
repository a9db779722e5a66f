"""mvit.notebook: the set-up cell every chapter opens with."""

import random

import numpy as np
import pytest
import torch

import mvit
from mvit.notebook import grid_str, on_meta, setup, table


def test_setup_seeds_every_generator_and_names_the_run(monkeypatch, capsys):
    monkeypatch.setenv("MVIT_PROFILE", "cpu")
    threads = torch.get_num_threads()
    try:
        run = setup(seed=3, threads=1)
        first = (random.random(), np.random.rand(), torch.rand(()).item())
        setup(seed=3, threads=1, verbose=False)
        assert (random.random(), np.random.rand(), torch.rand(()).item()) == first
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert run.profile == "cpu" and run.device == torch.device("cpu") and run.seed == 3
    assert "1 thread " in run.hardware
    printed = capsys.readouterr().out.strip()
    assert printed == run.line
    assert (
        printed.startswith("profile cpu | seed 3 | ") and f"mvit {mvit.__version__}" in printed and "seed 3" in printed
    )
    assert run.elapsed() >= 0


def test_setup_refuses_an_unknown_profile(monkeypatch):
    monkeypatch.setenv("MVIT_PROFILE", "tpu")
    with pytest.raises(ValueError, match="MVIT_PROFILE"):
        setup(verbose=False)


def test_table_is_markdown_with_one_line_per_row():
    md = table(["a", "b"], [(1, 2.5), ("x", None)]).data.splitlines()
    assert md == ["| a | b |", "| --- | --- |", "| 1 | 2.5 |", "| x | None |"]


def test_grid_str_and_on_meta():
    assert grid_str((8, 56, 56)) == "8×56×56"
    model = on_meta("mvit_b_16x4")
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == sum(
        p.numel() for p in mvit.build_model("mvit_b_16x4").parameters()
    )
