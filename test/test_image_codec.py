"""Image conversion without ROS: every encoding, padding, endianness and each bad input."""

from __future__ import annotations

import array
import zlib

import cv2
import numpy as np
import pytest

from saliency_ros.image_codec import (ImageDecodeError, ImageFields, compressed_size, compressed_to_bgr8,
                                     from_array, to_array, to_bgr8)

RNG = np.random.default_rng(0)
BGR = RNG.integers(0, 256, (6, 8, 3), dtype=np.uint8)


def msg(img: np.ndarray, encoding: str, pad: int = 0, big: bool = False) -> ImageFields:
    h, w = img.shape[:2]
    raw = img.astype(img.dtype.newbyteorder(">" if big else "<")) if img.dtype.itemsize > 1 else img
    rows = raw.reshape(h, -1).view(np.uint8)
    padded = np.zeros((h, rows.shape[1] + pad), np.uint8)
    padded[:, : rows.shape[1]] = rows
    return ImageFields(h, w, encoding, int(big), padded.shape[1], padded.tobytes())


@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("encoding,make", [
    ("bgr8", lambda b: b), ("rgb8", lambda b: b[:, :, ::-1]),
    ("bgra8", lambda b: cv2.cvtColor(b, cv2.COLOR_BGR2BGRA)), ("rgba8", lambda b: cv2.cvtColor(b, cv2.COLOR_BGR2RGBA)),
])
def test_colour_encodings_round_trip_to_bgr(encoding, make, pad: int) -> None:
    np.testing.assert_array_equal(to_bgr8(msg(np.ascontiguousarray(make(BGR)), encoding, pad)), BGR)


@pytest.mark.parametrize("big", [False, True])
@pytest.mark.parametrize("pad", [0, 3])
def test_mono16_endianness_and_padding(big: bool, pad: int) -> None:
    img = RNG.integers(0, 65536, (5, 7), dtype=np.uint16)
    decoded = to_array(msg(img, "mono16", pad * 2, big))
    assert decoded.dtype == np.uint16 and decoded.dtype.isnative
    np.testing.assert_array_equal(decoded, img)
    np.testing.assert_array_equal(to_bgr8(msg(img, "mono16", pad * 2, big))[..., 0], (img >> 8).astype(np.uint8))


def test_mono8_and_float_maps() -> None:
    mono = BGR[..., 0].copy()
    np.testing.assert_array_equal(to_bgr8(msg(mono, "mono8")), cv2.cvtColor(mono, cv2.COLOR_GRAY2BGR))
    f = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    np.testing.assert_allclose(to_array(msg(f, "32FC1", big=True)), f)
    bad = f.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ImageDecodeError, match="non_finite"):
        to_array(msg(bad, "32FC1"))


@pytest.mark.parametrize("pattern", ["rggb", "bggr", "gbrg", "grbg"])
def test_bayer_demosaic_recovers_a_flat_colour(pattern: str) -> None:
    colour = np.array([30, 140, 220], np.uint8)  # B, G, R
    idx = {"r": 2, "g": 1, "b": 0}
    mosaic = np.zeros((8, 8), np.uint8)
    for dy in range(2):
        for dx in range(2):
            mosaic[dy::2, dx::2] = colour[idx[pattern[2 * dy + dx]]]
    out = to_bgr8(msg(mosaic, f"bayer_{pattern}8"))
    np.testing.assert_allclose(out[2:-2, 2:-2].reshape(-1, 3), np.tile(colour, (16, 1)), atol=2)
    out16 = to_bgr8(msg(mosaic.astype(np.uint16) << 8, f"bayer_{pattern}16"))
    np.testing.assert_array_equal(out16, out)


@pytest.mark.parametrize("encoding,order", [("yuv422", "uyvy"), ("yuyv", "yuyv"), ("yuv422_yuy2", "yuyv")])
def test_yuv422_packings(encoding: str, order: str) -> None:
    bgr = np.full((4, 6, 3), (40, 160, 90), np.uint8)
    b, g, r = (bgr[..., i].astype(float) for i in range(3))
    # Camera YUV 4:2:2 is BT.601 with limited range (Y 16..235), as OpenCV decodes it.
    y = np.rint(16 + 0.257 * r + 0.504 * g + 0.098 * b).astype(np.uint8)
    u = np.rint(128 - 0.148 * r - 0.291 * g + 0.439 * b).astype(np.uint8)[:, ::2]
    v = np.rint(128 + 0.439 * r - 0.368 * g - 0.071 * b).astype(np.uint8)[:, ::2]
    packed = np.zeros((4, 6, 2), np.uint8)
    if order == "uyvy":
        packed[:, ::2, 0], packed[:, 1::2, 0] = u, v
        packed[..., 1] = y
    else:
        packed[..., 0] = y
        packed[:, ::2, 1], packed[:, 1::2, 1] = u, v
    np.testing.assert_allclose(to_bgr8(msg(packed, encoding)).astype(int), bgr.astype(int), atol=3)


@pytest.mark.parametrize("fields,reason", [
    (ImageFields(4, 4, "hsv8", 0, 12, bytes(48)), "unsupported_encoding"),
    (ImageFields(0, 4, "mono8", 0, 4, b""), "bad_size"),
    (ImageFields(4, 4, "bgr8", 0, 10, bytes(48)), "bad_step"),
    (ImageFields(4, 4, "bgr8", 0, 12, bytes(40)), "truncated"),
    (ImageFields(4, 5, "yuyv", 0, 10, bytes(40)), "bad_size"),
    (ImageFields(5000, 5000, "mono8", 0, 5000, b""), "oversized"),
])
def test_bad_frames_name_the_problem(fields: ImageFields, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as err:
        to_bgr8(fields)
    assert err.value.reason == reason


def test_decoding_is_zero_copy_for_unpadded_8bit() -> None:
    m = msg(BGR, "bgr8")
    data = bytearray(m.data)
    view = to_array(ImageFields(m.height, m.width, m.encoding, 0, m.step, data))
    data[0] = (data[0] + 1) % 256
    assert view[0, 0, 0] == data[0]


@pytest.mark.parametrize("encoding,img", [
    ("bgr8", BGR), ("mono8", BGR[..., 0]), ("32FC1", np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)),
    ("mono16", RNG.integers(0, 65536, (6, 8), dtype=np.uint16)),
])
def test_encode_round_trip(encoding: str, img: np.ndarray) -> None:
    h, w, step, data = from_array(img, encoding)
    assert isinstance(data, array.array) and len(data) == step * h
    np.testing.assert_array_equal(to_array(ImageFields(h, w, encoding, 0, step, data)), img)
    with pytest.raises(ValueError, match="cannot encode"):
        from_array(img, "yuyv")


@pytest.mark.parametrize("ext,fmt", [(".jpg", "jpeg"), (".png", "bgr8; png compressed bgr8")])
def test_compressed_image(ext: str, fmt: str) -> None:
    ok, buf = cv2.imencode(ext, BGR)
    img = compressed_to_bgr8(fmt, buf.tobytes())
    assert img.shape == BGR.shape
    if ext == ".png":
        np.testing.assert_array_equal(img, BGR)


@pytest.mark.parametrize("fmt,data,reason", [
    ("tiff", b"xx", "unsupported_encoding"), ("jpeg", b"", "truncated"), ("jpeg", b"\xff\xd8garbage", "truncated"),
    ("png", b"\x89PNG\r\n\x1a\n\0\0", "truncated"),
    ("jpeg", cv2.imencode(".tiff", np.zeros((4, 4, 3), np.uint8))[1].tobytes(), "unsupported_encoding"),
])
def test_compressed_bad_input(fmt: str, data: bytes, reason: str) -> None:
    with pytest.raises(ImageDecodeError) as err:
        compressed_to_bgr8(fmt, data)
    assert err.value.reason == reason


def test_compressed_oversized() -> None:
    ok, buf = cv2.imencode(".png", BGR)
    with pytest.raises(ImageDecodeError) as err:
        compressed_to_bgr8("png", buf.tobytes(), max_pixels=10)
    assert err.value.reason == "oversized"


def _png_of_zeros(width: int, height: int) -> bytes:
    """A real, valid grey PNG of `width` x `height` zeros, written row by row so the test never
    holds the frame: the 16000x16000 one is 254 KiB (the issue's 243 KiB bomb)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    comp, row, parts = zlib.compressobj(9), bytes(width + 1), []
    for _ in range(height):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def test_compressed_size_is_read_from_the_header_before_decoding() -> None:
    small = _png_of_zeros(40, 30)
    assert compressed_size(small) == ("png", 40, 30)
    assert compressed_to_bgr8("png", small).shape == (30, 40, 3)
    for quality in (50, 95):  # baseline and (OpenCV's) progressive JPEG
        jpg = cv2.imencode(".jpg", BGR, [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_PROGRESSIVE, int(quality == 95)])[1]
        assert compressed_size(jpg.tobytes()) == ("jpeg", BGR.shape[1], BGR.shape[0])
    bomb = _png_of_zeros(16000, 16000)
    assert len(bomb) < 300_000
    # The header check refuses it before the 768 MB decode: its own message, not the decoder's.
    with pytest.raises(ImageDecodeError, match=r"png header says 16000x16000, .*not decoded") as err:
        compressed_to_bgr8("png", bomb, max_pixels=3840 * 2160)
    assert err.value.reason == "oversized"
    # A header that claims a huge frame over a truncated body is refused as oversized, unread.
    with pytest.raises(ImageDecodeError, match="oversized|16000x16000"):
        compressed_to_bgr8("png", bomb[:64], max_pixels=3840 * 2160)
