"""Image files on disk: decoding every Pillow mode, cheap checks, folder scans, HAM10000 and GTSRB."""
from __future__ import annotations

import os
import shutil
import struct
import zlib

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from transferlab import image_files
from transferlab.errors import DatasetUnavailableError, UserError
from transferlab.image_files import ImageFolderScan, check_image, read_image_rgb, scan_class_folders
from transferlab.plugins.medical_imaging import HAM10000_CLASSES, HAM10000_URL, read_ham10000
from transferlab.plugins.road_signs import GTSRB_CLASSES, GTSRB_TEST_GT_URL, GTSRB_TEST_URL, GTSRB_TRAIN_URL, read_gtsrb
from support_datasets import write_gtsrb_fixture, write_ham10000_fixture


def save(image: Image.Image, path, **kwargs) -> str:
    image.save(path, **kwargs)
    return str(path)


def jpeg(path, colour=(200, 40, 40), size=(16, 12)) -> str:
    return save(Image.new("RGB", size, colour), path, quality=95)


def truncated_jpeg(path) -> str:
    rng = np.random.default_rng(0)
    save(Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)), path, quality=90)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    return str(path)


def png_header_only(path, width: int, height: int) -> str:
    """A PNG that declares a size in its header and has no pixel data: decoding it would fail."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"\x78\x9c") + chunk(b"IEND", b""))
    return str(path)


def assert_rgb(pixels: np.ndarray, shape: tuple[int, int]) -> None:
    assert pixels.dtype == np.uint8
    assert pixels.shape == (*shape, 3)


# --- read_image_rgb: every mode -----------------------------------------------------------------


def test_grayscale_and_bilevel_are_replicated(tmp_path):
    gray = np.array([[0, 60], [128, 255]], dtype=np.uint8)
    pixels = read_image_rgb(save(Image.fromarray(gray), tmp_path / "l.png"))
    assert_rgb(pixels, (2, 2))
    assert (pixels == gray[..., None]).all()
    bilevel = Image.new("1", (3, 1))
    bilevel.putpixel((1, 0), 1)
    pixels = read_image_rgb(save(bilevel, tmp_path / "one.png"))
    assert pixels[0].tolist() == [[0, 0, 0], [255, 255, 255], [0, 0, 0]]


def test_palette_with_transparency_composites_on_black(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 255, 0])
    image.putpixel((1, 0), 1)
    pixels = read_image_rgb(save(image, tmp_path / "p.png", transparency=0))
    assert pixels[0].tolist() == [[0, 0, 0], [0, 255, 0]]  # index 0 is transparent, not red
    assert read_image_rgb(save(image, tmp_path / "p.gif"))[0, 0].tolist() == [255, 0, 0]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = save(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    pixels = read_image_rgb(path)
    assert_rgb(pixels, (8, 8))
    assert np.abs(pixels[4, 4].astype(int) - [255, 0, 0]).max() <= 6  # red, not inverted


@pytest.mark.parametrize("fmt, dtype", [("png", np.uint16), ("tif", ">u2")])
def test_16_bit_scaled_by_range_not_clipped(tmp_path, fmt, dtype):
    values = np.array([[0, 1000, 32896, 65535]], dtype=dtype)
    path = save(Image.fromarray(values), tmp_path / f"deep.{fmt}")
    assert Image.open(path).mode in ("I;16", "I;16B")
    pixels = read_image_rgb(path)
    assert pixels[0, :, 0].tolist() == [0, 4, 128, 255]  # clipping would give [0, 255, 255, 255]


def test_32_bit_integer_and_float_images(tmp_path):
    ppm16 = tmp_path / "deep.pgm"  # Pillow reads 16-bit PGM as mode I
    ppm16.write_bytes(b"P5\n2 1\n65535\n" + np.array([257 * 10, 65535], dtype=">u2").tobytes())
    assert Image.open(ppm16).mode == "I"
    assert read_image_rgb(ppm16)[0, :, 0].tolist() == [10, 255]
    wide = save(Image.fromarray(np.array([[-1000, 24000, 99000]], dtype=np.int32)), tmp_path / "wide.tif")
    assert read_image_rgb(wide)[0, :, 0].tolist() == [0, 64, 255]  # beyond 16 bits: by its own min..max
    unit = save(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)), tmp_path / "unit.tif")
    assert read_image_rgb(unit)[0, :, 0].tolist() == [0, 128, 255]
    other = save(Image.fromarray(np.array([[-1.0, 1.0, 3.0]], dtype=np.float32)), tmp_path / "other.tif")
    assert read_image_rgb(other)[0, :, 0].tolist() == [0, 128, 255]


def test_alpha_composited_on_black(tmp_path):
    rgba = Image.new("RGBA", (2, 1), (200, 100, 50, 128))
    rgba.putpixel((1, 0), (255, 255, 255, 0))
    pixels = read_image_rgb(save(rgba, tmp_path / "rgba.png"))
    assert pixels[0].tolist() == [[100, 50, 25], [0, 0, 0]]
    pixels = read_image_rgb(save(Image.new("LA", (1, 1), (200, 128)), tmp_path / "la.png"))
    assert pixels[0, 0].tolist() == [100, 100, 100]


def test_exif_orientation_applied(tmp_path):
    image = Image.new("RGB", (20, 10), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 5, 10))  # red on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    pixels = read_image_rgb(save(image, tmp_path / "rot.jpg", exif=exif, quality=95))
    assert_rgb(pixels, (20, 10))
    assert pixels[2, 5, 0] > 200 and pixels[17, 5, 0] < 50  # the left edge is now on top


def test_bytes_and_pathlike_paths(tmp_path):
    path = jpeg(tmp_path / "a.jpg")
    expected = read_image_rgb(path)
    assert expected.flags.writeable  # callers may augment in place
    for variant in (path.encode(), np.bytes_(path.encode()), tmp_path / "a.jpg", np.str_(path)):
        assert (read_image_rgb(variant) == expected).all()


def test_roi_crop_is_inclusive_and_clamped(tmp_path):
    values = np.arange(10 * 8, dtype=np.uint8).reshape(8, 10)  # H=8, W=10
    path = save(Image.fromarray(values), tmp_path / "g.png")
    crop = read_image_rgb(path, (2, 1, 4, 3))
    assert crop.shape == (3, 3, 3) and crop.flags.c_contiguous and crop.flags.writeable
    assert (crop[..., 0] == values[1:4, 2:5]).all()
    assert read_image_rgb(path, np.array([-5, 6, 99, 99], dtype=np.int32)).shape == (2, 10, 3)
    with pytest.raises(UserError, match=r"outside image .*g\.png \(10x8 px\).*roi=\(20, 0, 30, 5\)"):
        read_image_rgb(path, [20, 0, 30, 5])
    with pytest.raises(UserError, match="4 whole numbers"):
        read_image_rgb(path, [1, 2, 3])
    with pytest.raises(UserError, match="4 whole numbers"):
        read_image_rgb(path, [1.5, 2, 3, 4])


def test_too_large_refused_from_the_header(tmp_path):
    # 7000 x 6000 = 42 MP, and no pixel data: the size must be refused before any decoding.
    path = png_header_only(tmp_path / "huge.png", 7000, 6000)
    with pytest.raises(UserError, match=r"huge\.png is 7000x6000 px \(42\.0 MP\), above the limit of 40 MP"):
        read_image_rgb(path)
    assert check_image(path) == "too large: 7000x6000 px (limit 40 MP)"


def test_pillow_decompression_bomb_becomes_user_error(tmp_path):
    path = png_header_only(tmp_path / "bomb.png", 20000, 20000)  # beyond Pillow's own hard limit
    with pytest.raises(UserError, match=r"bomb\.png is too large"):
        read_image_rgb(path)
    assert check_image(path).startswith("too large")


def test_max_pixels_read_at_call_time(tmp_path, monkeypatch):
    path = jpeg(tmp_path / "a.jpg", size=(30, 20))
    monkeypatch.setattr(image_files, "MAX_PIXELS", 500)
    with pytest.raises(UserError, match=r"30x20 px .* limit of 0\.0005 MP"):
        read_image_rgb(path)
    assert check_image(path) == "too large: 30x20 px (limit 0.0005 MP)"


def test_corrupt_and_missing_files_raise_user_errors(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(os.urandom(300))
    with pytest.raises(UserError, match=r"Cannot read image file .*junk\.png.*delete"):
        read_image_rgb(junk)
    with pytest.raises(UserError, match=r"Cannot decode image file .*cut\.jpg.*truncated"):
        read_image_rgb(truncated_jpeg(tmp_path / "cut.jpg"))
    with pytest.raises(UserError, match="not found"):
        read_image_rgb(tmp_path / "nope.jpg")


# --- check_image ----------------------------------------------------------------------------------


def test_check_image_reasons(tmp_path):
    assert check_image(jpeg(tmp_path / "ok.jpg")) is None
    assert check_image(save(Image.new("P", (4, 4)), tmp_path / "ok.gif")) is None
    assert check_image(truncated_jpeg(tmp_path / "cut.jpg")).startswith("truncated or not an image")
    noise = np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    png = save(Image.fromarray(noise), tmp_path / "cut.png")
    open(png, "wb").write(open(png, "rb").read()[:5000])
    assert check_image(png).startswith("truncated or not an image")
    (tmp_path / "text.png").write_text("not a picture")
    assert check_image(tmp_path / "text.png").startswith("truncated or not an image")
    assert check_image(str(tmp_path / "gone.png").encode()) == "file not found"


# --- scan_class_folders ---------------------------------------------------------------------------


def class_tree(root, counts: dict[str, int]):
    for name, count in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            jpeg(root / name / f"{i:03d}.jpg", colour=(i, 10, 10))
    return root


def test_scan_happy_path(tmp_path):
    root = class_tree(tmp_path / "data", {"dogs": 3, "cats": 3})
    save(Image.new("L", (5, 5)), root / "cats" / "extra.PNG")  # extensions match in any case
    (root / "cats" / "nested").mkdir()
    jpeg(root / "cats" / "nested" / "deep.jpg")
    (root / "cats" / "notes.txt").write_text("not an image")
    jpeg(root / "cats" / ".hidden.jpg")
    (root / ".cache").mkdir()
    jpeg(root / ".cache" / "x.jpg")
    (root / "__MACOSX").mkdir()
    jpeg(root / "__MACOSX" / "y.jpg")
    jpeg(root / "loose.jpg")
    scan = scan_class_folders(root)
    assert isinstance(scan, ImageFolderScan)
    assert scan.class_names == ("cats", "dogs")
    names = [os.path.relpath(p, root) for p in scan.paths]
    assert names == [
        "cats/000.jpg", "cats/001.jpg", "cats/002.jpg", "cats/extra.PNG", "cats/nested/deep.jpg", "dogs/000.jpg",
        "dogs/001.jpg", "dogs/002.jpg",
    ]
    assert scan.labels.tolist() == [0, 0, 0, 0, 0, 1, 1, 1] and scan.labels.dtype == np.int64
    assert all(os.path.isabs(p) for p in scan.paths)
    assert scan.skipped == ((str(root / "loose.jpg"), "not in a class folder"),)
    assert scan.rois is None and scan.groups is None and len(scan) == 8


def test_scan_skips_a_few_bad_files_and_counts_them(tmp_path):
    root = class_tree(tmp_path, {"a": 20, "b": 19})
    truncated_jpeg(root / "a" / "cut.jpg")
    (root / "b" / "random.png").write_bytes(os.urandom(500))
    scan = scan_class_folders(root)  # 2 of 41 = 4.9%
    assert len(scan) == 39
    assert [os.path.basename(p) for p, _ in scan.skipped] == ["cut.jpg", "random.png"]
    assert all(reason.startswith("truncated or not an image") for _, reason in scan.skipped)
    assert not any(p.endswith(("cut.jpg", "random.png")) for p in scan.paths)


def test_scan_refuses_too_many_bad_files(tmp_path):
    root = class_tree(tmp_path, {"a": 10, "b": 10})
    for i in range(7):
        (root / "a" / f"bad{i}.png").write_bytes(b"garbage")
    expected = r"7 of 27 image files .*bad0\.png: truncated or not an image.*and 2 more.*max_bad_fraction=0\.05"
    with pytest.raises(UserError, match=expected) as info:
        scan_class_folders(root)
    assert "Replace or delete" in str(info.value)
    assert len(scan_class_folders(root, max_bad_fraction=0.3)) == 20
    with pytest.raises(UserError, match=r"Received: max_bad_fraction=1\.5"):
        scan_class_folders(root, max_bad_fraction=1.5)


def test_scan_refuses_a_class_where_nothing_reads(tmp_path):
    root = class_tree(tmp_path, {"a": 30, "b": 0})
    (root / "b" / "bad.png").write_bytes(b"garbage")
    with pytest.raises(UserError, match=r"no image can be read: 'b'"):
        scan_class_folders(root)


def test_scan_empty_class_folder(tmp_path):
    root = class_tree(tmp_path, {"a": 2, "b": 2, "empty": 0})
    (root / "empty" / "readme.txt").write_text("x")
    with pytest.raises(UserError, match=r"without image files .*'empty'.*remove these folders or add images"):
        scan_class_folders(root)


def test_scan_one_class(tmp_path):
    with pytest.raises(UserError, match=r"one class folder \('only'\); a classifier needs at least two"):
        scan_class_folders(class_tree(tmp_path, {"only": 3}))


def test_scan_no_class_folders_mentions_loose_images(tmp_path):
    jpeg(tmp_path / "a.jpg")
    with pytest.raises(UserError, match=r"No class folders .*1 image files directly"):
        scan_class_folders(tmp_path)


def test_scan_missing_root(tmp_path):
    expected = r"not found: .*nowhere\. Expected one folder per class: .*<class name>/<image files>"
    with pytest.raises(DatasetUnavailableError, match=expected):
        scan_class_folders(tmp_path / "nowhere")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        scan_class_folders(tmp_path / "file")


# --- HAM10000 -------------------------------------------------------------------------------------

HAM_COUNTS = (2, 3, 4, 2, 4, 6, 2)


@pytest.fixture
def ham_root(tmp_path):
    return write_ham10000_fixture(tmp_path / "ham", per_class=HAM_COUNTS, seed=1, size=32)


def ham_csv(root) -> pd.DataFrame:
    return pd.read_csv(root / "HAM10000_metadata.csv")


def test_ham10000_fixture_round_trip(ham_root):
    table = ham_csv(ham_root)
    assert list(table.columns) == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    assert table["image_id"].str.fullmatch(r"ISIC_\d{7}").all() and table["lesion_id"].str.fullmatch(r"HAM_\d{7}").all()
    assert table.groupby("lesion_id").size().between(1, 3).all()
    assert (table.groupby("lesion_id")["dx"].nunique() == 1).all()
    parts = {"HAM10000_images_part_1", "HAM10000_images_part_2"}
    assert {p.name for p in ham_root.iterdir()} == {"HAM10000_metadata.csv", *parts}
    assert all(any((ham_root / f"HAM10000_images_part_{k}").iterdir()) for k in (1, 2))

    scan = read_ham10000(ham_root)
    assert scan.class_names == HAM10000_CLASSES and scan.skipped == ()
    assert len(scan) == sum(HAM_COUNTS) == len(table)
    assert np.bincount(scan.labels, minlength=7).tolist() == list(HAM_COUNTS)
    by_id = table.set_index("image_id")
    ids = [os.path.splitext(os.path.basename(p))[0] for p in scan.paths]
    assert ids == sorted(by_id.index)
    assert scan.groups.tolist() == by_id.loc[ids, "lesion_id"].tolist()
    assert [HAM10000_CLASSES[label] for label in scan.labels] == by_id.loc[ids, "dx"].tolist()
    assert_rgb(read_image_rgb(scan.paths[0]), (32, 32))


def test_ham10000_fixture_is_deterministic_and_learnable(tmp_path):
    first = write_ham10000_fixture(tmp_path / "one", per_class=6, seed=4)
    again = write_ham10000_fixture(tmp_path / "two", per_class=6, seed=4)
    assert ham_csv(first).equals(ham_csv(again))
    scan = read_ham10000(first)
    # The colour of the most atypical pixels (the lesion) separates the classes on held-out lesions.
    def lesion_colour(path):
        pixels = read_image_rgb(path).reshape(-1, 3).astype(np.float32)
        distance = np.abs(pixels - np.median(pixels, axis=0)).sum(1)
        return pixels[distance > np.percentile(distance, 85)].mean(0)
    features = np.stack([lesion_colour(p) for p in scan.paths])
    held_out = np.zeros(len(scan), bool)
    for c in range(7):  # every other lesion of each class, so each class is on both sides
        held_out |= np.isin(scan.groups, np.unique(scan.groups[scan.labels == c])[1::2])
    centroids = np.stack([features[~held_out & (scan.labels == c)].mean(0) for c in range(7)])
    predicted = np.argmin(((features[held_out, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == scan.labels[held_out]).mean() > 0.45  # chance is 1/7


def test_ham10000_missing_dataset(tmp_path):
    for root in (tmp_path / "absent", tmp_path):
        with pytest.raises(DatasetUnavailableError) as info:
            read_ham10000(root)
        message = str(info.value)
        for needle in (HAM10000_URL, "HAM10000_metadata.csv", "HAM10000_images_part_1/", "HAM10000_images_part_2/",
                       "TRANSFERLAB_HAM10000_DIR"):
            assert needle in message


def test_ham10000_missing_columns(ham_root):
    ham_csv(ham_root).drop(columns=["dx", "lesion_id"]).to_csv(ham_root / "HAM10000_metadata.csv", index=False)
    with pytest.raises(UserError, match=r"lacks the column\(s\) dx, lesion_id.*Present columns: image_id, dx_type, age"):
        read_ham10000(ham_root)


def test_ham10000_unknown_labels(ham_root):
    table = ham_csv(ham_root)
    table.loc[[0, 1], "dx"] = "melanoma"
    table.loc[2, "dx"] = "  NV "  # case and spaces are forgiven
    table.to_csv(ham_root / "HAM10000_metadata.csv", index=False)
    expected = r"2 rows have dx labels .*'melanoma' \(2 rows\).*Valid dx labels: akiec, bcc, bkl, df, mel, nv, vasc"
    with pytest.raises(UserError, match=expected):
        read_ham10000(ham_root)


def test_ham10000_duplicate_image_ids(ham_root):
    table = ham_csv(ham_root)
    pd.concat([table, table.iloc[[3]]]).to_csv(ham_root / "HAM10000_metadata.csv", index=False)
    with pytest.raises(UserError, match=r"unique.*" + table["image_id"][3]):
        read_ham10000(ham_root)


def test_ham10000_missing_and_corrupt_images(ham_root):
    table = ham_csv(ham_root)
    gone, cut = table["image_id"][0], table["image_id"][5]
    [path_gone] = ham_root.rglob(f"{gone}.jpg")
    [path_cut] = ham_root.rglob(f"{cut}.jpg")
    path_gone.unlink()
    assert len(read_ham10000(ham_root)) == 22  # 1 of 23 is within 5%
    truncated_jpeg(path_cut)
    with pytest.raises(UserError, match=rf"2 of 23 .*{gone}\.jpg: image file not found.*part_1\.zip and _part_2\.zip"):
        read_ham10000(ham_root)
    scan = read_ham10000(ham_root, max_bad_fraction=0.1)
    assert len(scan) == 21
    reasons = dict(scan.skipped)
    assert reasons[str(ham_root / f"{gone}.jpg")].startswith("image file not found")
    assert reasons[str(path_cut)].startswith("truncated or not an image")


def test_ham10000_images_found_anywhere_and_blank_lesion_is_own_group(ham_root):
    (ham_root / "extra").mkdir()
    shutil.move(ham_root / "HAM10000_images_part_2", ham_root / "extra" / "deeper")
    table = ham_csv(ham_root)
    table["lesion_id"] = table["lesion_id"].astype(object)
    table.loc[0, "lesion_id"] = ""
    table.to_csv(ham_root / "HAM10000_metadata.csv", index=False)
    scan = read_ham10000(ham_root)
    assert len(scan) == len(table)
    assert table["image_id"][0] in scan.groups.tolist()


# --- GTSRB ----------------------------------------------------------------------------------------


def gt_csv(path) -> pd.DataFrame:
    return pd.read_csv(path, sep=";")


def test_gtsrb_class_names():
    assert len(GTSRB_CLASSES) == 43 == len(set(GTSRB_CLASSES))
    assert GTSRB_CLASSES[0] == "speed limit 20" and GTSRB_CLASSES[14] == "stop"
    assert GTSRB_CLASSES[42] == "end of no passing by vehicles over 3.5 tons"
    assert all(name == name.lower() for name in GTSRB_CLASSES)


def test_gtsrb_fixture_round_trip(tmp_path):
    root = write_gtsrb_fixture(tmp_path / "gtsrb", classes=[0, 5, 42], per_class=4, n_test=6, seed=2)
    folder = root / "Final_Training" / "Images" / "00005"
    assert sorted(p.name for p in folder.iterdir()) == [
        "00000_00000.ppm", "00000_00001.ppm", "00000_00002.ppm", "00001_00000.ppm", "GT-00005.csv"
    ]
    header = (folder / "GT-00005.csv").read_text().splitlines()[0]
    assert header == "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
    assert "ClassId" not in gt_csv(root / "Final_Test" / "Images" / "GT-final_test.test.csv").columns

    scan, test_indices = read_gtsrb(root)
    assert scan.class_names == GTSRB_CLASSES and scan.skipped == ()
    assert len(scan) == 18 and test_indices.tolist() == list(range(12, 18))
    assert scan.labels[:12].tolist() == [0] * 4 + [5] * 4 + [42] * 4
    test_gt = gt_csv(root / "GT-final_test.csv")
    assert scan.labels[12:].tolist() == test_gt["ClassId"].tolist()
    annotated = {}  # path -> (width, height, roi) from every annotation file
    sources = [(p, p.parent) for p in root.rglob("GT-000*.csv")] + [(root / "GT-final_test.csv", root / "Final_Test" / "Images")]
    for csv, folder in sources:
        for row in gt_csv(csv).itertuples(index=False):
            annotated[str(folder / row[0])] = (row[1], row[2], list(row[3:7]))
    assert sorted(annotated) == sorted(scan.paths)
    for path, roi in zip(scan.paths, scan.rois):
        with Image.open(path) as image:
            assert image.format == "PPM" and 30 <= image.width <= 60 and 30 <= image.height <= 60
            assert annotated[path][:2] == image.size
        assert roi.tolist() == annotated[path][2]
    assert scan.rois.dtype == np.int32 and scan.rois.shape == (18, 4)
    assert (scan.rois[:, 0] >= 3).all() and (scan.rois[:, :2] < scan.rois[:, 2:]).all()  # a margin around the sign
    x1, y1, x2, y2 = scan.rois[0]
    assert_rgb(read_image_rgb(scan.paths[0].encode(), scan.rois[0].tolist()), (y2 - y1 + 1, x2 - x1 + 1))
    assert scan.groups[:5].tolist() == ["00000/00000"] * 3 + ["00000/00001", "00005/00000"]
    assert scan.groups[12] == "test/00000"


def test_gtsrb_all_classes_and_learnable(tmp_path):
    root = write_gtsrb_fixture(tmp_path / "g", per_class=3, n_test=86, seed=0)
    scan, test_indices = read_gtsrb(root)
    assert sorted(set(scan.labels.tolist())) == list(range(43))
    crops = [Image.fromarray(read_image_rgb(p, r)).resize((12, 12)) for p, r in zip(scan.paths, scan.rois)]
    features = np.stack([np.asarray(crop, np.float32).ravel() for crop in crops])
    train = np.ones(len(scan), bool)
    train[test_indices] = False
    centroids = np.stack([features[train & (scan.labels == c)].mean(0) for c in range(43)])
    predicted = np.argmin(((features[test_indices, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == scan.labels[test_indices]).mean() > 0.3  # chance is 1/43; about 0.6 here


def test_gtsrb_test_split_options(tmp_path):
    root = write_gtsrb_fixture(tmp_path / "x" / "GTSRB", classes=[1, 2], per_class=2, n_test=3)
    scan, test_indices = read_gtsrb(root, include_test=False)
    assert len(scan) == 4 and test_indices is None
    # The GT archive unzips next to the GTSRB folder; root may be that parent folder.
    shutil.move(root / "GT-final_test.csv", tmp_path / "x" / "GT-final_test.csv")
    scan, test_indices = read_gtsrb(tmp_path / "x")
    assert test_indices.tolist() == [4, 5, 6]
    shutil.move(tmp_path / "x" / "GT-final_test.csv", root / "Final_Test" / "Images" / "GT-final_test.csv")
    assert read_gtsrb(root)[1].tolist() == [4, 5, 6]
    (root / "Final_Test" / "Images" / "GT-final_test.csv").unlink()
    with pytest.raises(DatasetUnavailableError, match=r"(?s)have no labels.*GTSRB_Final_Test_GT\.zip.*include_test=False"):
        read_gtsrb(root)
    shutil.rmtree(root / "Final_Test")
    assert read_gtsrb(root)[1] is None


def test_gtsrb_missing_dataset(tmp_path):
    with pytest.raises(DatasetUnavailableError) as info:
        read_gtsrb(tmp_path)
    for needle in (GTSRB_TRAIN_URL, GTSRB_TEST_URL, GTSRB_TEST_GT_URL, "Final_Training/Images/00000/00000_00000.ppm",
                   "GT-00000.csv", "Final_Test/Images", "GT-final_test.csv", "TRANSFERLAB_GTSRB_DIR"):
        assert needle in str(info.value)


@pytest.fixture
def small_gtsrb(tmp_path):
    root = write_gtsrb_fixture(tmp_path / "g", classes=[3, 4], per_class=3, n_test=2)
    return root, root / "Final_Training" / "Images" / "00004" / "GT-00004.csv"


def test_gtsrb_missing_columns(small_gtsrb):
    root, csv = small_gtsrb
    gt_csv(csv).drop(columns=["Roi.X2"]).to_csv(csv, sep=";", index=False)
    expected = r"GT-00004\.csv lacks the column\(s\) Roi\.X2.*Present columns: Filename, Width.*semicolon"
    with pytest.raises(UserError, match=expected):
        read_gtsrb(root)
    gt_csv(csv).to_csv(csv, sep=",", index=False)  # a comma-separated copy shows up as one column
    with pytest.raises(UserError, match="lacks the column"):
        read_gtsrb(root)


@pytest.mark.parametrize("class_id, message", [
    (43, r"ClassId must be in 0\.\.42.*line 3.*Received: ClassId=43"),
    (3, r"must be 4, the class of its folder.*Received: ClassId in \[3\]"),
])
def test_gtsrb_bad_class_id(small_gtsrb, class_id, message):
    root, csv = small_gtsrb
    table = gt_csv(csv)
    table.loc[1, "ClassId"] = class_id
    table.to_csv(csv, sep=";", index=False)
    with pytest.raises(UserError, match=message):
        read_gtsrb(root)


def test_gtsrb_roi_clamped_or_refused(small_gtsrb):
    root, csv = small_gtsrb
    table = gt_csv(csv)
    table.loc[0, "Roi.X2"] = table.loc[0, "Width"] + 4
    table.loc[0, "Roi.Y1"] = -2
    table.to_csv(csv, sep=";", index=False)
    scan, _ = read_gtsrb(root)
    index = scan.paths.tolist().index(str(csv.parent / table.loc[0, "Filename"]))
    assert scan.rois[index].tolist() == [table.loc[0, "Roi.X1"], 0, table.loc[0, "Width"] - 1, table.loc[0, "Roi.Y2"]]
    table.loc[0, "Roi.X1"] = table.loc[0, "Roi.X2"] = 0
    table.loc[1, "Roi.X1"], table.loc[1, "Roi.X2"] = 20, 10
    table.to_csv(csv, sep=";", index=False)
    with pytest.raises(UserError, match=r"line 3 has an empty ROI.*Roi=\(20, "):
        read_gtsrb(root)
    table["Roi.X1"] = table["Roi.X1"].astype(object)
    table.loc[1, "Roi.X1"] = "x"
    table.to_csv(csv, sep=";", index=False)
    with pytest.raises(UserError, match=r"Roi\.X1 must be a whole number, but line 3 has 'x'"):
        read_gtsrb(root)


def test_gtsrb_missing_image_and_annotation(small_gtsrb):
    root, csv = small_gtsrb
    (csv.parent / "00000_00001.ppm").unlink()
    with pytest.raises(UserError, match=r"1 of 8 .*00000_00001\.ppm: image file not found"):
        read_gtsrb(root)
    scan, test_indices = read_gtsrb(root, max_bad_fraction=0.2)
    assert len(scan) == 7 and test_indices.tolist() == [5, 6]
    (root / "Final_Training" / "Images" / "stray").mkdir()
    with pytest.raises(UserError, match=r"Unexpected folder .*stray"):
        read_gtsrb(root)
    (root / "Final_Training" / "Images" / "stray").rmdir()
    csv.unlink()
    with pytest.raises(UserError, match=r"GT-00004\.csv is missing.*GTSRB_Final_Training_Images\.zip"):
        read_gtsrb(root)
