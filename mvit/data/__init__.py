"""Video and image data: decoding (PyAV, decord for long videos), clip sampling, datasets (Kinetics-style
annotation files, Charades' multi-label CSVs, AVA's boxes), the paper's augmentations, Mixup/CutMix, repeated
augmentation, and synthetic video datasets (temporal classes; overlapping multi-label events; moving objects with
boxes and actions) (paper §4, §5, Appendix D)."""

from . import ava, charades, synthetic, synthetic_detection, synthetic_multilabel
from .annotations import AnnotationError, annotation_line, read_annotation_file, read_class_folders
from .ava import AVADataset
from .charades import CharadesDataset
from .decoding import VideoDecodeError, open_video, read_frames, sample_video_path
from .encoding import transcode, write_video
from .failures import EXCLUDED, Failure, TooManyFailures, UnreadableFile
from .images import DigitsDataset, ImageFolderDataset
from .mixup import MixupCutmix, smooth_one_hot
from .sampler import RepeatAugSampler
from .sampling import segment_clip, stride_clip, uniform_positions
from .synthetic import SyntheticVideoDataset
from .synthetic_detection import SyntheticDetectionDataset
from .synthetic_multilabel import SyntheticMultiLabelDataset
from .transforms import (
    IMAGENET_AUGMENTATION,
    IMAGENET_MEAN,
    IMAGENET_STD,
    KINETICS_MEAN,
    KINETICS_STD,
    Augmentation,
    EvalTransform,
    ImageTransform,
    TrainTransform,
)
from .video_dataset import VideoDataset

__all__ = [
    "AVADataset",
    "AnnotationError",
    "Augmentation",
    "DigitsDataset",
    "EXCLUDED",
    "EvalTransform",
    "Failure",
    "IMAGENET_AUGMENTATION",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImageFolderDataset",
    "ImageTransform",
    "KINETICS_MEAN",
    "KINETICS_STD",
    "MixupCutmix",
    "RepeatAugSampler",
    "SyntheticDetectionDataset",
    "SyntheticMultiLabelDataset",
    "SyntheticVideoDataset",
    "TooManyFailures",
    "TrainTransform",
    "UnreadableFile",
    "VideoDataset",
    "VideoDecodeError",
    "annotation_line",
    "open_video",
    "read_annotation_file",
    "read_class_folders",
    "read_frames",
    "sample_video_path",
    "segment_clip",
    "smooth_one_hot",
    "stride_clip",
    "synthetic",
    "synthetic_multilabel",
    "ava",
    "charades",
    "CharadesDataset",
    "synthetic_detection",
    "transcode",
    "uniform_positions",
    "write_video",
]
