"""Data fingerprints: what identifying a class-folder tree by content costs, against the scan that loading it
does anyway (``scan_class_folders``: list every file and check each image's bytes).

Three figures on the same generated tree (JPEGs of a few KB each, the size of a small photo set): the first
fingerprint (every file's bytes hashed), a repeat (hashes remembered per file state: one ``stat`` per file),
and the fingerprint above the byte limit (sizes and modification times only); each against one scan.
Target: the first fingerprint costs less than the scan.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from _util import isolated_home, machine, report


def write_tree(root: Path, classes: int, per_class: int, size: int) -> int:
    """JPEG noise in ``classes`` folders; returns the total bytes written."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    total = 0
    for c in range(classes):
        folder = root / f"class {c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            path = folder / f"{i:05d}.jpg"
            Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path, quality=90)
            total += path.stat().st_size
    return total


def main(classes: int = 10, per_class: int = 300, size: int = 96) -> None:
    isolated_home("fingerprint")
    from transferlab import fingerprints
    from transferlab.image_files import scan_class_folders

    root = Path(tempfile.mkdtemp(prefix="transferlab-bench-tree-"))
    total = write_tree(root, classes, per_class, size)
    n = classes * per_class
    print(f"{machine()}; {n:,} JPEGs, {total / 2**20:.1f} MiB")

    def clock(fn) -> float:
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start

    scan = clock(lambda: scan_class_folders(root))
    first = clock(lambda: fingerprints.fingerprint_class_folders(root))
    again = clock(lambda: fingerprints.fingerprint_class_folders(root))
    fingerprints.FINGERPRINT_BYTES_LIMIT = 0
    by_stat = clock(lambda: fingerprints.fingerprint_class_folders(root))
    report("first fingerprint (bytes hashed)", first, scan, "s", "< 1")
    report("repeat fingerprint (hashes remembered)", again, scan, "s")
    report("fingerprint above the byte limit (stat only)", by_stat, scan, "s")


if __name__ == "__main__":
    main()
