"""Synthetic data sets the tests write themselves (only MNIST ships with the project).

Each generator is deterministic (seeded) and small, so session fixtures can build
them in well under a second:

- :func:`write_shape_folder`: coloured (or gray) shapes on textured backgrounds,
  one class per shape, in the Keras ``DIR/<class>/`` layout, as PNG and JPEG plus
  one BMP and one GIF; one JPEG stored sideways with an EXIF orientation tag, one
  PNG with a transparent background.
- :func:`write_feature_csv`: 13 sensor-like features on very different scales
  (one in the hundreds, one in thousandths) and three string labels.
- :func:`write_npz`: the same kinds of data as arrays in the keras layout.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

SHAPES = ("circle", "square", "triangle", "cross")
# Each class has its own hue family: the shape and the colour both tell it, so a small
# network learns it confidently in a few epochs (the tests check pipelines, not learning).
HUES = {"circle": (220, 60, 50), "square": (50, 170, 60), "triangle": (60, 90, 220), "cross": (230, 200, 40)}
EXIF_ORIENTATION = 0x0112
FEATURE_CLASSES = ("barbera", "barolo", "grignolino")
# (name, typical value, spread): one column in the hundreds, one in thousandths.
FEATURES = (
    ("temperature_k", 300.0, 20.0),
    ("vibration_g", 0.004, 0.001),
    ("humidity", 0.5, 0.1),
    ("pressure_kpa", 100.0, 2.0),
    ("current_a", 2.0, 0.5),
    ("voltage_v", 12.0, 0.8),
    ("speed_rpm", 50.0, 10.0),
    ("ph", 7.0, 0.6),
    ("light_lux", 30.0, 8.0),
    ("co2_ppm_k", 0.8, 0.2),
    ("noise_db", 60.0, 6.0),
    ("flow_l_min", 5.0, 1.5),
    ("tilt_deg", 1.0, 0.5),
)


def _draw_shape(rng: np.random.Generator, shape: str, size: tuple[int, int], color: bool) -> "object":
    """One RGB (or L) PIL image of ``shape`` at a random place and scale on a noisy background."""
    from PIL import Image, ImageDraw

    height, width = size
    background = rng.integers(0, 90, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    side = min(height, width)
    radius = rng.uniform(0.28, 0.42) * side
    cy = rng.uniform(radius, height - radius)
    cx = rng.uniform(radius, width - radius)
    fill = tuple(int(np.clip(c + rng.integers(-30, 31), 0, 255)) for c in HUES[shape]) if color else (230,) * 3
    box = (cx - radius, cy - radius, cx + radius, cy + radius)
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - radius), (cx - radius, cy + radius), (cx + radius, cy + radius)], fill=fill)
    else:
        bar = radius / 3
        draw.rectangle((cx - radius, cy - bar, cx + radius, cy + bar), fill=fill)
        draw.rectangle((cx - bar, cy - radius, cx + bar, cy + radius), fill=fill)
    return image if color else image.convert("L")


def write_shape_folder(
    root: Path,
    *,
    per_class: int = 40,
    size: tuple[int, int] = (40, 48),
    color: bool = True,
    classes: tuple[str, ...] = SHAPES[:3],
    split: bool = False,
    special_files: bool = True,
    seed: int = 0,
) -> Path:
    """Write ``root/<class>/NNN.png|jpg`` (or ``root/train|test/<class>/...`` with ``split``).

    Parameters
    ----------
    per_class : int
        Images per class (with ``split``, a quarter more go to ``test/``).
    size : (height, width)
        Size of every image as displayed (the EXIF-rotated one is stored transposed).
    color : bool
        RGB shapes in a hue per class, or gray shapes (stored as single-channel files).
    special_files : bool
        In the first class: image 1 is a sideways JPEG with EXIF orientation 6,
        image 2 an RGBA PNG whose background is transparent, image 3 a BMP and
        image 4 a GIF. Every other image alternates PNG and JPEG.

    Returns
    -------
    Path
        ``root``.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    layouts = {"train": per_class, "test": max(per_class // 4, 2)} if split else {"": per_class}
    for part, count in layouts.items():
        for class_index, shape in enumerate(classes):
            folder = root / part / shape if part else root / shape
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                image = _draw_shape(rng, shape, size, color)
                stem = folder / f"{i:03d}"
                special = special_files and class_index == 0 and part in ("", "train") and i in (1, 2, 3, 4)
                if special and i == 1:
                    exif = Image.Exif()
                    exif[EXIF_ORIENTATION] = 6  # "rotate 90° clockwise to display"
                    image.transpose(Image.Transpose.ROTATE_90).save(f"{stem}.jpg", quality=95, exif=exif)
                elif special and i == 2:
                    with_alpha = image.convert("RGBA" if color else "LA")
                    alpha = np.full(size, 255, np.uint8)
                    alpha[: size[0] // 4] = 0  # the top quarter is transparent: composited onto white
                    with_alpha.putalpha(Image.fromarray(alpha, "L"))
                    with_alpha.save(f"{stem}.png")
                elif special and i == 3:
                    image.save(f"{stem}.bmp")
                elif special and i == 4:
                    image.save(f"{stem}.gif")
                elif i % 2:
                    image.save(f"{stem}.jpg", quality=92)
                else:
                    image.save(f"{stem}.png")
    return root


def feature_table(rows: int, *, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """``rows`` samples of the :data:`FEATURES` and their labels, classes interleaved.

    Every feature's class means are ``(class_index - 1) * spread`` apart, except
    that the hundreds-scale column carries little signal and the thousandths-scale
    one the most: a model that loses the small column (an int8 input quantised
    with one scale for all features) loses accuracy.
    """
    rng = np.random.default_rng(seed)
    labels = [FEATURE_CLASSES[i % len(FEATURE_CLASSES)] for i in range(rows)]
    index = np.array([FEATURE_CLASSES.index(label) for label in labels])
    columns = []
    for j, (_, centre, spread) in enumerate(FEATURES):
        separation = 0.2 if j == 0 else 3.0 if j == 1 else 0.8
        columns.append(centre + spread * (rng.standard_normal(rows) + separation * (index - 1)))
    return np.stack(columns, axis=1), labels


def _write_csv(path: Path, values: np.ndarray, labels: list[str], label_column: str) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([name for name, _, _ in FEATURES] + [label_column])
        for row, label in zip(values, labels):
            writer.writerow([f"{v:.6g}" for v in row] + [label])


def write_feature_csv(
    path: Path, *, rows: int = 300, split: bool = False, label_column: str = "label", seed: int = 0
) -> Path:
    """A CSV of 13 features and a string label (``split``: ``path/train.csv`` + ``path/test.csv``).

    Returns ``path`` (the file, or the folder with ``split``).
    """
    values, labels = feature_table(rows, seed=seed)
    if not split:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_csv(path, values, labels, label_column)
        return path
    path.mkdir(parents=True, exist_ok=True)
    cut = rows * 4 // 5
    _write_csv(path / "train.csv", values[:cut], labels[:cut], label_column)
    _write_csv(path / "test.csv", values[cut:], labels[cut:], label_column)
    return path


def write_npz(path: Path, kind: str = "rgb", *, n_train: int = 60, n_test: int = 20, one_hot: bool = False,
              class_names: tuple[str, ...] | None = None, seed: int = 0) -> Path:
    """An ``.npz`` in the keras layout: ``kind`` "rgb" (uint8 (N, 24, 32, 3)), "gray" (N, 24, 32) or "features" (N, 13).

    Labels cycle through three classes; ``one_hot`` stores them one-hot;
    ``class_names`` adds that array.
    """
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 3
        if kind == "features":
            x = feature_table(n, seed=seed + n)[0].astype(np.float64)
        else:
            shape = (n, 24, 32, 3) if kind == "rgb" else (n, 24, 32)
            x = rng.integers(0, 256, shape, dtype=np.uint8)
        arrays[f"x_{split}"] = x
        arrays[f"y_{split}"] = np.eye(3, dtype=np.float32)[labels] if one_hot else labels.astype(np.uint8)
    if class_names is not None:
        arrays["class_names"] = np.array(class_names)
    np.savez(path, **arrays)
    return path
