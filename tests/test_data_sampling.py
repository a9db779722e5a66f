"""Clip sampling: T frames tau apart or one per segment, uniform test positions, padding of short videos."""

import numpy as np
import pytest

from mvit.data import segment_clip, stride_clip, uniform_positions


def test_stride_clip_spans_t_times_tau():
    np.testing.assert_array_equal(stride_clip(100, 4, 3, 0.0), [0, 3, 6, 9])
    np.testing.assert_array_equal(stride_clip(100, 4, 3, 1.0), [90, 93, 96, 99])  # last window that fits
    middle = stride_clip(100, 4, 3, 0.5)
    assert np.all(np.diff(middle) == 3) and middle[0] == 45


def test_short_videos_are_padded_with_their_last_frame():
    np.testing.assert_array_equal(stride_clip(5, 4, 2, 0.7), [0, 2, 4, 4])
    np.testing.assert_array_equal(stride_clip(1, 3, 4, 0.0), [0, 0, 0])
    np.testing.assert_array_equal(segment_clip(3, 6, 0.5), [0, 0, 1, 1, 2, 2])


def test_segment_clip_takes_one_frame_per_segment():
    indices = segment_clip(80, 8, 0.5)
    np.testing.assert_array_equal(indices, np.arange(8) * 10 + 5)
    rng = np.random.default_rng(0)
    for _ in range(20):
        random = segment_clip(80, 8, rng.random(8))
        assert np.all(random // 10 == np.arange(8))  # every frame lies in its own segment


def test_uniform_positions_cover_the_video():
    np.testing.assert_allclose(uniform_positions(1), [0.5])
    np.testing.assert_allclose(uniform_positions(5), [0, 0.25, 0.5, 0.75, 1.0])
    starts = [stride_clip(300, 16, 4, p)[0] for p in uniform_positions(5)]
    assert starts[0] == 0 and starts[-1] == 300 - 61 and np.all(np.diff(starts) > 0)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: stride_clip(0, 4, 2, 0.5), "at least one frame"),
        (lambda: stride_clip(10, 0, 2, 0.5), "num_frames"),
        (lambda: stride_clip(10, 4, 0, 0.5), "sampling_rate"),
        (lambda: stride_clip(10, 4, 2, 1.5), "position"),
        (lambda: segment_clip(10, 4, 1.0), "offsets"),
        (lambda: uniform_positions(0), "num_clips"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
