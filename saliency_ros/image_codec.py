"""sensor_msgs/Image <-> numpy without ROS or cv_bridge (PyPI cv-bridge is a ROS 1 shim).

Decoding reads the message buffer in place (`np.frombuffer`, no copy) and validates it first:
every way a frame can be malformed raises `ImageDecodeError` with the reason, so a node can
count it and skip the frame instead of crashing or silently using garbage. Encoding returns
an `array.array('B')`, which rclpy assigns to `msg.data` about a thousand times faster than a
numpy array (0.1 ms against 112 ms at 720p).
"""

from __future__ import annotations

import array
from dataclasses import dataclass

import cv2
import numpy as np

# encoding -> (channels, numpy dtype of one channel)
_LAYOUT: dict[str, tuple[int, str]] = {
    "rgb8": (3, "u1"), "bgr8": (3, "u1"), "rgba8": (4, "u1"), "bgra8": (4, "u1"),
    "mono8": (1, "u1"), "8UC1": (1, "u1"), "8UC3": (3, "u1"),
    "mono16": (1, "u2"), "16UC1": (1, "u2"),
    "32FC1": (1, "f4"),
    "bayer_rggb8": (1, "u1"), "bayer_bggr8": (1, "u1"), "bayer_gbrg8": (1, "u1"), "bayer_grbg8": (1, "u1"),
    "bayer_rggb16": (1, "u2"), "bayer_bggr16": (1, "u2"), "bayer_gbrg16": (1, "u2"), "bayer_grbg16": (1, "u2"),
    "yuv422": (2, "u1"), "uyvy": (2, "u1"), "yuv422_yuy2": (2, "u1"), "yuyv": (2, "u1"),
}
# ROS names the Bayer pattern from the top-left pixel; OpenCV from the second row's pair
# (the same mapping cv_bridge uses).
_BAYER = {"rggb": cv2.COLOR_BayerBG2BGR, "bggr": cv2.COLOR_BayerRG2BGR,
          "gbrg": cv2.COLOR_BayerGR2BGR, "grbg": cv2.COLOR_BayerGB2BGR}
_YUV = {"yuv422": cv2.COLOR_YUV2BGR_UYVY, "uyvy": cv2.COLOR_YUV2BGR_UYVY,
        "yuv422_yuy2": cv2.COLOR_YUV2BGR_YUYV, "yuyv": cv2.COLOR_YUV2BGR_YUYV}

SUPPORTED_ENCODINGS = tuple(_LAYOUT)


class ImageDecodeError(ValueError):
    """The message cannot be used as a frame; `reason` is a short key for counters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class ImageFields:
    """The fields of sensor_msgs/Image this module reads (a message works as well)."""

    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes | bytearray | memoryview | array.array


def to_array(msg: ImageFields, max_pixels: int = 4096 * 4096) -> np.ndarray:
    """The image as H x W (x C) in its own encoding and dtype, native byte order.

    A view into `msg.data` where possible (8-bit, no padding); copies only to drop row
    padding or to swap bytes.
    """
    h, w, enc = int(msg.height), int(msg.width), msg.encoding
    if enc not in _LAYOUT:
        raise ImageDecodeError("unsupported_encoding", f"{enc!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})")
    if h <= 0 or w <= 0:
        raise ImageDecodeError("bad_size", f"{w}x{h}")
    if h * w > max_pixels:
        raise ImageDecodeError("oversized", f"{w}x{h} exceeds the limit of {max_pixels} pixels")
    channels, kind = _LAYOUT[enc]
    if enc in _YUV and w % 2:
        raise ImageDecodeError("bad_size", f"{enc} needs an even width, got {w}")
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<") if kind != "u1" else np.dtype("u1")
    row = w * channels * dtype.itemsize
    if msg.step < row:
        raise ImageDecodeError("bad_step", f"step {msg.step} < width x pixel size = {row} for {enc} {w}x{h}")
    buf = np.frombuffer(msg.data, np.uint8)
    if buf.size < msg.step * (h - 1) + row:
        raise ImageDecodeError("truncated", f"{buf.size} bytes for {h} rows of step {msg.step} ({enc} {w}x{h})")
    if msg.step == row:
        rows = buf[: h * row].reshape(h, row)
    else:  # drop the row padding (one copy)
        rows = np.ascontiguousarray(np.lib.stride_tricks.as_strided(buf, shape=(h, row), strides=(msg.step, 1)))
    img = rows.view(dtype)
    img = img.reshape(h, w, channels) if channels > 1 else img.reshape(h, w)
    if not img.dtype.isnative:
        img = img.astype(img.dtype.newbyteorder("="))
    if kind == "f4" and not np.isfinite(img).all():
        raise ImageDecodeError("non_finite", f"{enc} image contains NaN or infinity")
    return img


def to_bgr8(msg: ImageFields, max_pixels: int = 4096 * 4096) -> np.ndarray:
    """The frame as H x W x 3 uint8 BGR, what the models' preprocessing takes.

    16-bit images keep their high byte; float images are scaled from [0, 1].
    """
    img = to_array(msg, max_pixels)
    enc = msg.encoding
    if enc in ("bgr8", "8UC3"):
        return img
    if enc == "rgb8":
        return cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if enc == "rgba8":
        return cv2.cvtColor(img, cv2.COLOR_RGBA2BGR)
    if enc == "bgra8":
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    if enc in _YUV:
        return cv2.cvtColor(img, _YUV[enc])
    if enc.startswith("bayer_"):
        raw = img if img.dtype == np.uint8 else (img >> 8).astype(np.uint8)
        return cv2.cvtColor(raw, _BAYER[enc[6:10]])
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype == np.float32:
        img = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, progressive, lossless, ...); C4, C8 and CC are not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compressed_size(data: bytes | memoryview) -> tuple[str, int, int]:
    """(kind, width, height) of a PNG or JPEG payload, read from its header alone.

    Decoders allocate the full frame before a size can be checked (OpenCV accepts up to 2^30
    pixels: a 243 KiB PNG of 16000x16000 costs 1.4 GB and 20 s), so the size is taken from
    the header first. Both headers are fixed by their specifications: PNG's IHDR is the first
    chunk; a JPEG's size is in its SOFn segment, which precedes the scan data.
    """
    mv = memoryview(data)
    if mv[:8] == _PNG_SIGNATURE:
        if len(mv) < 24 or mv[12:16] != b"IHDR":
            raise ImageDecodeError("truncated", f"{len(mv)}-byte png payload has no IHDR header")
        return "png", int.from_bytes(mv[16:20], "big"), int.from_bytes(mv[20:24], "big")
    if mv[:2] == b"\xff\xd8":
        pos = 2
        while pos + 4 <= len(mv):
            if mv[pos] != 0xFF:
                break
            marker = mv[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # no length field
                pos += 2
                continue
            length = int.from_bytes(mv[pos + 2:pos + 4], "big")
            if marker in _JPEG_SOF:
                if pos + 9 > len(mv):
                    break
                return "jpeg", int.from_bytes(mv[pos + 7:pos + 9], "big"), int.from_bytes(mv[pos + 5:pos + 7], "big")
            if marker == 0xDA or length < 2:  # scan data before any frame header
                break
            pos += 2 + length
        raise ImageDecodeError("truncated", f"{len(mv)}-byte jpeg payload has no readable frame header")
    raise ImageDecodeError("unsupported_encoding",
                           f"payload is neither PNG nor JPEG (starts {bytes(mv[:8])!r})")


def compressed_to_bgr8(fmt: str, data: bytes | bytearray | memoryview | array.array,
                       max_pixels: int = 4096 * 4096) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG or PNG, as image_transport writes them) -> BGR frame.

    `fmt` is the message's format field ("jpeg", "png", "bgr8; jpeg compressed bgr8", ...).
    The payload itself must be PNG or JPEG (OpenCV would decode TIFF, EXR and more), and its
    header size must be within `max_pixels` before anything is decoded.
    """
    if not any(k in fmt.lower() for k in ("jpeg", "jpg", "png")):
        raise ImageDecodeError("unsupported_encoding", f"compressed format {fmt!r} (supported: jpeg, png)")
    buf = np.frombuffer(data, np.uint8)
    if buf.size == 0:
        raise ImageDecodeError("truncated", f"empty {fmt} payload")
    kind, width, height = compressed_size(buf.data)
    if width * height > max_pixels:
        raise ImageDecodeError("oversized", f"{kind} header says {width}x{height}, over the limit of "
                               f"{max_pixels} pixels (not decoded)")
    if width == 0 or height == 0:
        raise ImageDecodeError("truncated", f"{kind} header says {width}x{height}")
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if img is None:
        raise ImageDecodeError("truncated", f"{buf.size}-byte {kind} payload could not be decoded")
    if img.shape[:2] != (height, width):  # cannot happen for a well-formed file; never trust it
        raise ImageDecodeError("truncated", f"{kind} decoded to {img.shape[1]}x{img.shape[0]}, "
                               f"its header says {width}x{height}")
    return img


def from_array(img: np.ndarray, encoding: str) -> tuple[int, int, int, array.array]:
    """(height, width, step, data) of an image message in `encoding`, little-endian, no padding."""
    if encoding not in ("mono8", "bgr8", "rgb8", "32FC1", "mono16"):
        raise ValueError(f"cannot encode {encoding!r}; use mono8, bgr8, rgb8, mono16 or 32FC1")
    channels, kind = _LAYOUT[encoding]
    expected = np.dtype(kind).newbyteorder("<") if kind != "u1" else np.dtype("u1")
    if img.ndim != (3 if channels > 1 else 2) or (channels > 1 and img.shape[2] != channels):
        raise ValueError(f"{encoding} needs {'H x W x %d' % channels if channels > 1 else 'H x W'}, got {img.shape}")
    contiguous = np.ascontiguousarray(img, dtype=expected)
    data = array.array("B")
    data.frombytes(memoryview(contiguous).cast("B"))  # one copy; tobytes() made a second (0.18 -> 0.08 ms, 720p 32FC1)
    h, w = img.shape[:2]
    return h, w, w * channels * expected.itemsize, data
