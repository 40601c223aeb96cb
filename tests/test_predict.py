"""`transferlab predict`: every exported format on image files, the table and --json, and what it refuses."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from transferlab.cli import main


def _formats(out) -> list[str]:
    return json.loads((out / "export.json").read_text())["formats"]


@pytest.fixture
def image_files(at_export, tmp_path):
    """Test images of the run as files (the class tree's own PNGs), plus the same pixels as JPEG, grey and
    RGBA files: what the formats must agree on. Returns (paths, stored top class or None)."""
    paths = list(at_export.test_paths[:4])
    expected = [int(p) for p in at_export.predictions["predicted"][:4]]
    pixels = np.asarray(Image.open(paths[0]).convert("RGB"))
    extra = {"same.jpg": Image.fromarray(pixels), "grey.png": Image.fromarray(pixels).convert("L"),
             "alpha.png": Image.fromarray(np.dstack([pixels, np.full(pixels.shape[:2], 255, np.uint8)]), "RGBA")}
    for name, image in extra.items():
        image.save(tmp_path / name)
        paths.append(str(tmp_path / name))
        expected.append(None)
    return paths, expected


def test_every_format_gives_the_stored_top_class_and_all_formats_agree(at_export, image_files, capsys):
    paths, expected = image_files
    seen = {}
    for name in _formats(at_export.out):
        assert main(["predict", str(at_export.out), *paths, "--format", name, "--json", "--top", "2"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["format"] == name and result["run_id"] == at_export.run_id
        assert ("runs the TensorFlow graph ops" in " ".join(result["notes"])) == (name == "saved_model")
        assert "intact as exported; that does not show who exported them" in result["notes"][0]
        assert [p["image"] for p in result["predictions"]] == paths
        tops = [p["top"] for p in result["predictions"]]
        assert all(len(top) == 2 and top[0]["probability"] >= top[1]["probability"] for top in tops)
        assert all(top[0]["label"] == at_export.class_names[top[0]["index"]] for top in tops)
        for top, stored in zip(tops, expected):
            if stored is not None:  # the run's own test images: the run's own prediction
                assert top[0]["index"] == stored, name
        seen[name] = np.array([[t["probability"] for t in top] for top in tops])
    first = next(iter(seen.values()))
    for name, probabilities in seen.items():
        assert np.allclose(probabilities, first, atol=1e-4), name


def test_the_default_is_the_lightest_format_and_the_table_has_one_line_per_image(at_export, image_files, capsys):
    paths, _ = image_files
    assert main(["predict", str(at_export.out), *paths[:2]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"run {at_export.run_id} · tflite"
    assert lines[1].split() == ["image", "top", "1", "top", "2", "top", "3"]
    rows = [line for line in lines[3:] if not line.startswith("note: ")]
    assert len(rows) == 2
    assert lines[5:] == ["note: the tflite files match their sha256 in export.json: they are intact as exported; "
                         "that does not show who exported them."]
    for path, row in zip(paths[:2], rows):
        assert row.startswith(path)
        cells = row[len(path):].split()
        assert len(cells) == 6 and all(label in at_export.class_names for label in cells[0::2])
        probabilities = [float(c) for c in cells[1::2]]
        assert probabilities == sorted(probabilities, reverse=True) and 0.99 <= sum(probabilities) <= 1.01


def test_keras_format_reads_weights_only_never_load_model(at_export, image_files, capsys, monkeypatch):
    import keras

    def refuse(*args, **kwargs):
        raise AssertionError("predict must not call keras.saving.load_model")

    monkeypatch.setattr(keras.saving, "load_model", refuse)
    monkeypatch.setattr(keras.models, "load_model", refuse)
    paths, expected = image_files
    assert main(["predict", str(at_export.out), *paths[:4], "--format", "keras", "--json"]) == 0
    tops = [p["top"][0]["index"] for p in json.loads(capsys.readouterr().out)["predictions"]]
    assert tops == expected[:4]


def test_an_undecodable_image_refuses_before_anything_is_printed(at_export, image_files, tmp_path, capsys):
    paths, _ = image_files
    broken = tmp_path / "holiday.jpg"
    broken.write_bytes(b"not an image at all")
    assert main(["predict", str(at_export.out), paths[0], str(broken), paths[1]]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("transferlab: error:") == 1 and f"Cannot read image {broken}" in captured.err
    assert main(["predict", str(at_export.out), str(tmp_path / "missing.png")]) == 2
    assert "file not found" in capsys.readouterr().err


def test_an_altered_model_file_or_a_folder_that_is_no_export_refuses(at_export, image_files, tmp_path, capsys):
    paths, _ = image_files
    copy = tmp_path / "copy"
    shutil.copytree(at_export.out, copy)
    tflite = copy / "model.tflite"
    data = bytearray(tflite.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tflite.write_bytes(bytes(data))
    assert main(["predict", str(copy), paths[0], "--format", "tflite"]) == 2
    assert "model.tflite in" in (err := capsys.readouterr().err) and "does not match its sha256" in err
    assert main(["predict", str(copy), paths[0], "--format", "keras"]) == 0  # the other formats are intact
    capsys.readouterr()
    record = json.loads((copy / "export.json").read_text())
    record["format_files"].pop("onnx", None)
    (copy / "export.json").write_text(json.dumps(record))
    assert main(["predict", str(copy), paths[0], "--format", "onnx"]) == 2
    assert "This export has no 'onnx' format" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), paths[0]]) == 2
    assert "is not an export folder (no export.json)" in capsys.readouterr().err
