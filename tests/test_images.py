"""Every supported file kind becomes a correct RGB image; bad files give one clear reason."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featscope.errors import ImageLoadError
from featscope.images import load_image, open_image
from helpers import photo


@pytest.fixture(scope="module")
def cat() -> Image.Image:
    return photo("chelsea")  # 451 x 300


def _close(a: Image.Image, b: Image.Image, tol: float = 6.0) -> bool:
    diff = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))
    return a.size == b.size and float(diff.mean()) < tol


@pytest.mark.parametrize("ext", ["jpg", "png", "bmp", "tif", "webp", "gif"])
def test_common_formats(tmp_path, cat, ext):
    path = tmp_path / f"cat.{ext}"
    cat.save(path, quality=95) if ext in ("jpg", "webp") else cat.save(path)
    img = load_image(path)
    assert img.mode == "RGB"
    assert _close(img, cat, tol=12.0 if ext == "gif" else 3.0)  # GIF is palette-quantised


def test_grayscale_and_palette_and_rgba(tmp_path, cat):
    gray = cat.convert("L")
    gray.save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.mode == "RGB" and _close(img, gray.convert("RGB"))
    pal = cat.convert("P", palette=Image.ADAPTIVE, colors=256)
    pal.save(tmp_path / "p.png")
    assert _close(load_image(tmp_path / "p.png"), pal.convert("RGB"), tol=0.01)
    # RGBA: fully transparent pixels become white, opaque ones keep their colour.
    rgba = cat.convert("RGBA")
    alpha = np.full((cat.height, cat.width), 255, np.uint8)
    alpha[:, :100] = 0
    rgba.putalpha(Image.fromarray(alpha))
    rgba.save(tmp_path / "a.png")
    arr = np.asarray(load_image(tmp_path / "a.png"))
    assert (arr[:, :100] == 255).all()
    assert np.array_equal(arr[:, 200:], np.asarray(cat)[:, 200:])


def test_cmyk_jpeg(tmp_path, cat):
    cat.convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    img = load_image(tmp_path / "c.jpg")
    assert img.mode == "RGB" and _close(img, cat, tol=10.0)


def test_16bit_grayscale_uses_its_value_range(tmp_path):
    # A 12-bit scan in a 16-bit container: values 0..4095. Clipping at 255 would make it white.
    ramp = np.tile(np.linspace(0, 4095, 256, dtype=np.uint16), (64, 1))
    Image.fromarray(ramp).save(tmp_path / "s.png")
    with Image.open(tmp_path / "s.png") as raw:
        assert raw.mode.startswith("I")
    arr = np.asarray(load_image(tmp_path / "s.png"))[..., 0]
    assert arr[0, 0] == 0 and arr[0, -1] == 255
    assert 120 <= arr[0, 128] <= 135  # the middle of the range stays mid-grey


def test_exif_orientation_is_applied(tmp_path, cat):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    cat.save(tmp_path / "r.jpg", exif=exif, quality=95)
    img, size = open_image(tmp_path / "r.jpg")
    assert img.size == (300, 451)
    assert size == (300, 451)
    assert _close(img, cat.transpose(Image.ROTATE_270))


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    arr = np.asarray(load_image(tmp_path / "anim.gif"))
    assert arr[..., 0].mean() > 200 and arr[..., 2].mean() < 50


def test_one_pixel_image(tmp_path):
    Image.new("RGB", (1, 1), (10, 200, 30)).save(tmp_path / "one.png")
    assert load_image(tmp_path / "one.png").getpixel((0, 0)) == (10, 200, 30)


def test_jpeg_draft_decodes_large_photos_smaller_but_reports_true_size(tmp_path, cat):
    big = cat.resize((cat.width * 8, cat.height * 8))
    big.save(tmp_path / "big.jpg", quality=90)
    img, size = open_image(tmp_path / "big.jpg", draft_min_side=256)
    assert size == big.size
    assert min(img.size) >= 256 and img.width < big.width


def test_dicom(tmp_path):
    pydicom = pytest.importorskip("pydicom")  # a declared dev dependency; always present in CI
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    arr = np.tile(np.linspace(0, 1000, 64).astype(np.uint16), (48, 1))
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.2"  # digital mammography
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1"  # 0 = white: must be inverted
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = arr.tobytes()
    ds.save_as(tmp_path / "m.dcm", enforce_file_format=True)
    out = np.asarray(load_image(tmp_path / "m.dcm"))
    assert out.shape == (48, 64, 3)
    assert out[0, 0, 0] == 255 and out[0, -1, 0] == 0
    (tmp_path / "bad.dcm").write_bytes(b"DICM" * 10)
    with pytest.raises(ImageLoadError, match="not a readable DICOM file"):
        load_image(tmp_path / "bad.dcm")


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p: p.write_bytes(b""), r"empty file \(0 bytes\)"),
        (lambda p: p.write_text("<html>not an image</html>"), "not an image"),
        (lambda p: p.symlink_to(p), "symbolic link loop"),
    ],
)
def test_bad_files(tmp_path, make, reason):
    path = tmp_path / "bad.png"
    make(path)
    with pytest.raises(ImageLoadError, match=reason):
        load_image(path)


def test_truncated_and_misnamed(tmp_path, cat):
    cat.save(tmp_path / "ok.jpg", quality=90)
    data = (tmp_path / "ok.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated or corrupt"):
        load_image(tmp_path / "t.jpg")
    cat.save(tmp_path / "really_png.jpg", format="PNG")  # content decides, not the name
    assert _close(load_image(tmp_path / "really_png.jpg"), cat, tol=0.5)


def test_unreadable_file(cat):
    # Root reads any file, so as root the check runs in a forked child that drops to 'nobody'.
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        path = Path(d) / "locked.jpg"
        cat.save(path)
        os.chmod(path, 0)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                if os.geteuid() == 0:
                    os.setgid(65534)
                    os.setuid(65534)
                try:
                    load_image(path)
                    msg = "loaded"
                except ImageLoadError as exc:
                    msg = str(exc)
                os.write(write, msg.encode())
            finally:
                os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        assert os.read(read, 1000).decode() == "permission denied"


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    Image.new("1", (20000, 20000)).save(tmp_path / "huge.png")  # 400 megapixels, ~60 KB on disk
    with pytest.raises(ImageLoadError, match=r"image too large \(20000x20000 = 400 megapixels"):
        load_image(tmp_path / "huge.png")
    Image.new("RGB", (100, 100)).save(tmp_path / "small.png")
    with pytest.raises(ImageLoadError, match="raise it with --max-pixels"):
        load_image(tmp_path / "small.png", max_pixels=5_000)
    assert load_image(tmp_path / "small.png", max_pixels=20_000).size == (100, 100)
