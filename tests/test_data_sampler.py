"""RepeatAugSampler: every clip num_repeats times per epoch, split over DDP ranks without losing or
duplicating a sample, copies of a clip on different ranks, deterministic per seed and epoch."""

from collections import Counter

import pytest

from mvit.data import RepeatAugSampler


def ranks(size, num_repeats=2, num_replicas=2, epoch=0, seed=0):
    samplers = [
        RepeatAugSampler(range(size), num_repeats, num_replicas, rank, seed=seed) for rank in range(num_replicas)
    ]
    for sampler in samplers:
        sampler.set_epoch(epoch)
    return [list(sampler) for sampler in samplers]


@pytest.mark.parametrize("size", [10, 11])
def test_two_ranks_see_every_sample_once_per_repetition(size):
    rank0, rank1 = ranks(size)
    assert len(rank0) == len(rank1) == size  # 2 copies / 2 ranks
    assert sorted(rank0) == list(range(size)) and sorted(rank1) == list(range(size))
    assert Counter(rank0 + rank1) == {i: 2 for i in range(size)}


def test_copies_of_a_clip_go_to_different_ranks_at_the_same_step():
    rank0, rank1 = ranks(12)
    assert rank0 == rank1  # the same clip at each step, augmented independently on each rank


def test_uneven_split_pads_at_most_one_per_extra_rank():
    split = ranks(10, num_repeats=3, num_replicas=4)  # 30 draws over 4 ranks: padded to 32
    assert {len(r) for r in split} == {8}
    counts = Counter(i for r in split for i in r)
    assert set(counts) == set(range(10)) and all(c >= 3 for c in counts.values())
    assert sum(counts.values()) - 30 == 2


def test_single_process_and_no_repeats():
    sampler = RepeatAugSampler(range(7), num_repeats=1)
    assert len(sampler) == 7 and sorted(sampler) == list(range(7))


def test_deterministic_given_seed_and_epoch():
    assert ranks(20, epoch=3) == ranks(20, epoch=3)
    assert ranks(20, epoch=3) != ranks(20, epoch=4)
    assert ranks(20, seed=1) != ranks(20, seed=2)
    ordered = RepeatAugSampler(range(5), 2, 1, 0, shuffle=False)
    assert list(ordered) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_bad_arguments():
    with pytest.raises(ValueError, match="rank 2 of 2"):
        RepeatAugSampler(range(4), 2, 2, 2)
    with pytest.raises(ValueError, match="num_repeats"):
        RepeatAugSampler(range(4), 0)
    with pytest.raises(ValueError, match="empty"):
        RepeatAugSampler([], 2)
