"""Frames, masks and audio files: load and save with clear errors. The one set of file loaders:
the benchmark reader, the generator and the runtime's file inputs (``runtime/files.py``: frames
folders, audio windows, video) all read through it; it stands at the bottom, next to the schema.

Every loader raises :class:`~auditor_lite.data.schema.DataError` naming the file when it is missing
or cannot be decoded, so a bad file in a 26k-mask benchmark is reported by name, not as a PIL or
libsndfile traceback. Masks follow upstream's reading (``cv2.imread`` then ``gray > 0``): any
nonzero colour pixel is foreground; an alpha channel is ignored.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, UnidentifiedImageError

from auditor_lite.data.schema import NUM_FRAMES, SAMPLE_RATE, Clip, DataError

# PIL raises several exception types for a truncated or corrupt file.
_IMAGE_ERRORS = (OSError, UnidentifiedImageError, ValueError, SyntaxError)
MAX_IMAGE_PIXELS = 40_000_000    # frames and masks beyond ~40 MP are refused before decoding


def open_image(path) -> Image.Image:
    """Decode an image file; a DataError naming it if it is missing, unreadable or larger than
    :data:`MAX_IMAGE_PIXELS` (checked from the header, before any pixel is decoded: a small file can
    declare a gigapixel image)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise DataError(path, f"{image.width}x{image.height} pixels is more than the "
                                f"{MAX_IMAGE_PIXELS // 1_000_000} MP an input image may have; resize it first")
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(path, f"refused: {exc}") from None
    except _IMAGE_ERRORS as exc:
        raise DataError(path, f"not a readable image ({exc})") from None
    return image


def image_size(path) -> tuple[int, int]:
    """(width, height) from the image header only: cheap enough to check every file of a benchmark."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        with Image.open(path) as image:
            return image.size
    except _IMAGE_ERRORS as exc:
        raise DataError(path, f"not a readable image ({exc})") from None


def load_mask(path) -> np.ndarray:
    """A mask PNG as bool HxW: any nonzero colour pixel is True (palette images by their colour)."""
    path = Path(path)
    image = open_image(path)
    # Palette index 0 is not necessarily black, and alpha is not part of the mask.
    colour_mode = {"P": "RGB", "PA": "RGB", "LA": "L", "RGBA": "RGB"}.get(image.mode)
    if colour_mode:
        image = image.convert(colour_mode)
    pixels = np.asarray(image)
    if pixels.ndim == 3:
        return pixels.any(axis=2)
    return pixels != 0


def save_mask(path, mask: np.ndarray) -> None:
    """Write a 2-D mask as an 8-bit grayscale PNG with values 0/255, creating parent directories."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"save_mask({path}): mask must be 2-D (H, W), got shape {mask.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.where(mask.astype(bool), 255, 0).astype(np.uint8), mode="L").save(path)


def load_frame(path) -> np.ndarray:
    """A frame as uint8 HxWx3 RGB."""
    path = Path(path)
    return np.asarray(open_image(path).convert("RGB"))


def save_frame(path, rgb: np.ndarray, quality: int = 90) -> None:
    """Write a uint8 HxWx3 RGB frame as JPEG, creating parent directories."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"save_frame({path}): expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, mode="RGB").save(path, format="JPEG", quality=int(quality))


def load_frames(clip: Clip) -> np.ndarray:
    """The clip's 10 frames as uint8 (10, H, W, 3); a missing frame or a size change is a DataError."""
    paths = [clip.frame_path(index) for index in range(NUM_FRAMES)]
    missing = [p.name for p in paths if not p.is_file()]  # all of them, before decoding any
    if missing:
        raise DataError(clip.frames_dir, f"frame {', '.join(missing)} is missing "
                        f"(a clip needs {NUM_FRAMES} frames 0.jpg .. {NUM_FRAMES - 1}.jpg)")
    frames = []
    for path in paths:
        frame = load_frame(path)
        if frames and frame.shape != frames[0].shape:
            raise DataError(clip.frames_dir, f"frame {path.name} is {frame.shape[1]}x{frame.shape[0]}, "
                            f"frame 0.jpg is {frames[0].shape[1]}x{frames[0].shape[0]}")
        frames.append(frame)
    return np.stack(frames)


def audio_info(path) -> tuple[int, int, float]:
    """(sample rate, channels, duration in seconds) from the audio header, without decoding."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise DataError(path, f"not a decodable audio file ({exc})") from None
    return int(info.samplerate), int(info.channels), float(info.duration)


def load_audio(path) -> tuple[np.ndarray, int]:
    """Float32 mono samples (channels averaged, as upstream's librosa mono=True) and the sample rate.

    No resampling: callers that need 16 kHz check the returned rate (``data validate`` does).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "file not found")
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
        raise DataError(path, f"not a decodable audio file ({exc})") from None
    return wave.mean(axis=1, dtype=np.float32), int(rate)


def save_audio(path, wave: np.ndarray, sr: int = SAMPLE_RATE) -> None:
    """Write mono float samples in [-1, 1] as a PCM16 WAV (values outside are clipped)."""
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"save_audio({path}): expected mono 1-D samples, got shape {wave.shape}")
    if not np.all(np.isfinite(wave)):
        raise ValueError(f"save_audio({path}): samples contain NaN or infinity")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wave, -1.0, 1.0), int(sr), subtype="PCM_16", format="WAV")
