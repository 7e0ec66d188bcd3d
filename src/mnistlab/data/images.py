"""Image files to what an MNIST model expects, the way MNIST itself was made.

MNIST's digits were scanned dark-on-light, inverted, cropped to their bounding box, scaled so that
the longer side is 20 pixels (keeping the aspect ratio, anti-aliased), and placed in a 28x28 frame
with their centre of mass at the centre. A photo or a drawing goes through the same steps here;
then the pixels are normalised exactly as the training images are (``data.images_for_model``).
Pillow does the decoding and the resampling; nothing here imports Keras or MLflow, so a bad file
is reported before either loads.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnistlab.core.errors import MnistlabError
from mnistlab.data.prepare import images_for_model

SIZE = 28  # the frame
DIGIT_SIZE = 20  # the longer side of the digit inside it
#: the ink must stand out from the background by at least this many grey levels (of 255), else
#: the image counts as blank (JPEG noise on white paper stays well below it)
MIN_CONTRAST = 32
#: after the background is removed, pixels fainter than this fraction of the darkest ink are paper
#: texture or JPEG ringing: dropped, so that they move neither the bounding box nor the centre
INK_FLOOR = 0.2
#: images above this many pixels are refused (a 43 KB PNG can hold 144 million); larger than
#: WORKING_SIDE on their longer side, they are reduced before any work on their pixels
MAX_PIXELS = 40_000_000
WORKING_SIDE = 2048
#: Pillow's modes of more than 8 bits per pixel: integer (16, 32 bits) and float
DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


class ImageError(MnistlabError):
    """A file that is not a readable image, or an image with no digit on it."""

    exit_code = 2


@dataclass(frozen=True)
class Prepared:
    """One input image as the model sees it."""

    path: Path
    pixels: np.ndarray  # uint8 (28, 28), light digit on black, as MNIST stores it
    inverted: bool  # the original was dark on light
    original_size: tuple[int, int]  # (width, height)

    def model_input(self) -> np.ndarray:
        """float32 (28, 28, 1), normalised as in training."""
        return images_for_model(self.pixels[np.newaxis])[0]


def prepare(path: str | Path) -> Prepared:
    """Read ``path`` and turn it into an MNIST-style 28x28 image; ImageError names the file."""
    path = Path(path)
    grey = read_grey(path)
    try:
        pixels, inverted = to_mnist(grey)
    except ImageError as exc:
        raise ImageError(f"{path}: {exc}") from None
    return Prepared(path, pixels, inverted, (grey.shape[1], grey.shape[0]))


def read_grey(path: Path) -> np.ndarray:
    """Any image Pillow reads, as uint8 grey levels; transparency is laid on white paper."""
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    if not path.is_file():  # reading a FIFO or a device would wait forever
        raise ImageError(f"{path}: not a regular file (a pipe, a socket or a device); give an image file")
    try:
        with warnings.catch_warnings():  # Pillow warns of a decompression bomb above 89 MP; ours refuses first
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
        with opened as image:
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"{path}: {width} x {height} pixels ({width * height / 1e6:.0f} megapixels) is more "
                    f"than predict reads ({MAX_PIXELS / 1e6:.0f}); scale the image down"
                )
            image.draft("L", (WORKING_SIDE, WORKING_SIDE))  # JPEG: decoded at a fraction of its size
            image = ImageOps.exif_transpose(image)  # a phone photo's orientation tag
            factor = max(image.size) // WORKING_SIDE
            if factor > 1:
                if image.mode in ("P", "1"):  # palette and bilevel images do not reduce
                    image = image.convert("RGBA")
                image = image.reduce(factor)
            if image.mode in DEEP_MODES:
                return _deep_to_grey(np.asarray(image), path)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
            return np.asarray(image.convert("L"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read (PNG, JPEG, BMP, GIF, TIFF, WebP, ...)") from None
    except Image.DecompressionBombError as exc:  # too large for Pillow to open at all
        raise ImageError(
            f"{path}: more than predict reads ({MAX_PIXELS / 1e6:.0f} megapixels: {exc}); scale the image down"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated, corrupt
        raise ImageError(f"{path}: cannot read the image ({' '.join(str(exc).split())})") from None


def _deep_to_grey(pixels: np.ndarray, path: Path) -> np.ndarray:
    """16-bit, 32-bit and float grey levels to 0-255 by the image's own range (Pillow's "L"
    conversion clips them instead: a 16-bit digit came out nearly blank)."""
    values = pixels.astype(np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ImageError(f"{path}: holds no finite pixel value")
    low, high = float(finite.min()), float(finite.max())
    if high == low:
        return np.zeros(pixels.shape, dtype=np.uint8)
    scaled = (np.nan_to_num(values, nan=low, posinf=high, neginf=low) - low) / (high - low) * 255.0
    return np.round(scaled).astype(np.uint8)


def to_mnist(grey: np.ndarray) -> tuple[np.ndarray, bool]:
    """MNIST's steps on a grey image: (uint8 28x28 light-on-dark, whether it was inverted)."""
    ink = grey.astype(np.float32)
    border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    background = float(np.median(border))  # the digit rarely covers the edges; the paper does
    inverted = background > 127.5
    if inverted:  # dark digit on light paper
        ink, background = 255.0 - ink, 255.0 - background
    ink = np.clip(ink - background, 0.0, None)
    contrast = float(ink.max())
    if contrast < MIN_CONTRAST:
        raise ImageError(
            f"the image is blank: nothing differs from the background by more than {contrast:.0f} "
            f"grey levels (a digit needs at least {MIN_CONTRAST} of 255)"
        )
    ink /= contrast  # the darkest stroke becomes full ink, as in MNIST
    ink[ink < INK_FLOOR] = 0.0
    rows, cols = np.nonzero(ink.any(axis=1))[0], np.nonzero(ink.any(axis=0))[0]
    digit = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    digit = _scaled(digit, DIGIT_SIZE / max(digit.shape))
    return _centred(digit), inverted


def _scaled(digit: np.ndarray, factor: float) -> np.ndarray:
    """Resampled with Lanczos (anti-aliased going down, smooth going up), values kept in [0, 1]."""
    height, width = digit.shape
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    resized = Image.fromarray(digit.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _centred(digit: np.ndarray) -> np.ndarray:
    """The digit pasted into the 28x28 frame with its centre of mass on pixel (14, 14), where
    MNIST's own digits have theirs; whatever would fall outside the frame is cut off."""
    total = float(digit.sum())
    rows, cols = np.indices(digit.shape)
    if total > 0:
        centre_row, centre_col = float((rows * digit).sum()) / total, float((cols * digit).sum()) / total
    else:  # all ink lost in resampling (a speck): the middle of the box
        centre_row, centre_col = (digit.shape[0] - 1) / 2, (digit.shape[1] - 1) / 2
    top, left = round(SIZE // 2 - centre_row), round(SIZE // 2 - centre_col)
    frame = np.zeros((SIZE, SIZE), dtype=np.float32)
    r0, c0 = max(top, 0), max(left, 0)
    r1, c1 = min(top + digit.shape[0], SIZE), min(left + digit.shape[1], SIZE)
    frame[r0:r1, c0:c1] = digit[r0 - top : r1 - top, c0 - left : c1 - left]
    return np.round(frame * 255.0).astype(np.uint8)


def save_png(pixels: np.ndarray, path: Path) -> Path:
    """The 28x28 image the model saw, as a grey PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path
