"""`source: images`: image files in class folders (or a CSV of paths and labels), decoded with Pillow.

    data: {source: images, path: photos/, resize: [36, 36], crop: [32, 32], mode: RGB,
           normalize: {mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]},
           augment: {flip: true, crop: 4, color: 0.2}, workers: 2, split: [0.8, 0.2]}

Class names are the folder names in sorted order. `resize`, `crop` and `mode` are the preparation every
image gets (here and in `build predict`/`evaluate`, from the layout that travels with the model);
`normalize` becomes the first op of the exported network. `augment` applies to the training split only,
each sample's randomness drawn from (seed, epoch, sample), so a resumed run and any number of `workers`
(DataLoader processes that decode whole batches) see exactly the same images.
"""
from __future__ import annotations

import csv
import glob
from pathlib import Path

import numpy as np
import torch

from builder.core.errors import UserError
from builder.data.dataset import COMMON_KEYS, Data, Dataset, split_rows
from builder.data.source import Source

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
KEYS = ("path", "resize", "crop", "mode", "normalize", "augment", "workers")
AUGMENT_KEYS = ("flip", "crop", "color")
MODES = {"RGB": 3, "L": 1}
MAX_FILES = 10_000_000


def check(cfg: dict) -> dict:
    """The source's own keys, checked; a one-line error naming the key."""
    from builder.core.errors import did_you_mean

    for key in cfg:
        if key not in KEYS and key not in COMMON_KEYS:
            hint = did_you_mean(key, set(KEYS) | COMMON_KEYS)
            raise UserError(f"train.data: source 'images' takes no key {key!r}"
                            + (f" ({hint})" if hint else f"; it takes {', '.join(KEYS)}"))
    for key in ("standardize", "standardize_target", "transform", "stream", "window"):
        if cfg.get(key):
            raise UserError(f"train.data.{key}: not for source 'images' (use resize, crop, normalize)")
    if not cfg.get("path") and not cfg.get("files"):
        raise UserError("train.data.path: source 'images' needs a folder of class folders or a CSV of path,label")
    layout = {"source": "images", "mode": cfg.get("mode", "RGB"),
              "resize": _size(cfg.get("resize"), "resize"), "crop": _size(cfg.get("crop"), "crop")}
    if layout["mode"] not in MODES:
        raise UserError(f"train.data.mode: one of {', '.join(MODES)}, not {layout['mode']!r}")
    if layout["resize"] is None and layout["crop"] is None:
        raise UserError("train.data.resize: source 'images' needs resize: [H, W] (or crop:) so that a batch has one size")
    norm = cfg.get("normalize")
    if norm is not None and not (isinstance(norm, dict) and set(norm) == {"mean", "std"}
                                 and all(isinstance(norm[k], list) and len(norm[k]) == MODES[layout["mode"]]
                                         and all(isinstance(v, (int, float)) for v in norm[k]) for k in norm)
                                 and all(v > 0 for v in norm["std"])):
        raise UserError(f"train.data.normalize: {{mean: [...], std: [...]}} with one positive std per channel "
                        f"({MODES[layout['mode']]} for mode {layout['mode']}), got {norm!r}")
    aug = cfg.get("augment") or {}
    if not isinstance(aug, dict) or set(aug) - set(AUGMENT_KEYS):
        raise UserError(f"train.data.augment: keys {', '.join(AUGMENT_KEYS)} (flip: true, crop: padding in pixels, "
                        f"color: brightness/contrast jitter 0..1), got {aug!r}")
    if not isinstance(aug.get("flip", False), bool) or not _whole(aug.get("crop", 0)) or \
            not isinstance(aug.get("color", 0), (int, float)) or not 0 <= aug.get("color", 0) < 1:
        raise UserError(f"train.data.augment: flip is true/false, crop a padding in pixels (>= 0), color in [0, 1); got {aug!r}")
    workers = cfg.get("workers", 0)
    if not _whole(workers) or workers > 64:
        raise UserError(f"train.data.workers: a whole number of DataLoader processes from 0 to 64, got {workers!r}")
    return layout


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _size(value, key):
    if value is None:
        return None
    if _whole(value) and value > 0:
        return [value, value]
    if isinstance(value, list) and len(value) == 2 and all(_whole(v) and v > 0 for v in value):
        return list(value)
    raise UserError(f"train.data.{key}: a size in pixels, N or [H, W], got {value!r}")


def list_images(path, classes=None) -> tuple[list[str], np.ndarray | None, list[str] | None]:
    """(files, class ids or None, class names) of a folder of class folders, a folder of images, a CSV of
    path,label, a single image or a glob. With `classes` (the model's), folder names map to those ids."""
    p = Path(path)
    if p.is_dir():
        subdirs = sorted(d for d in p.iterdir() if d.is_dir())
        loose = _images_in(p, recursive=False)
        if subdirs and not loose:
            names = [d.name for d in subdirs]
            files, labels = [], []
            for d in subdirs:
                found = _images_in(d, recursive=True)
                files += found
                labels += [d.name] * len(found)
            return files, *_ids(p, labels, classes or names), classes or names
        if not loose:
            raise UserError(f"{p}: no image files ({', '.join(EXTENSIONS[:4])}, ...) in it or in class folders under it")
        return loose, None, classes
    if p.suffix.lower() == ".csv" and p.is_file():
        files, labels = _from_csv(p)
        names = classes or sorted(set(labels))
        return files, *_ids(p, labels, names), names
    if p.is_file():
        return [str(p)], None, classes
    hits = sorted(h for h in glob.glob(str(path), recursive=True) if h.lower().endswith(EXTENSIONS))
    if not hits:
        raise UserError(f"{path}: no such image file, folder or matching files")
    return hits, None, classes


def _images_in(folder: Path, recursive: bool) -> list[str]:
    walk = folder.rglob("*") if recursive else folder.iterdir()
    out = []
    for f in walk:
        if f.suffix.lower() in EXTENSIONS and f.is_file():
            out.append(str(f))
            if len(out) > MAX_FILES:
                raise UserError(f"{folder}: more than {MAX_FILES:,} image files")
    return sorted(out)


def _from_csv(p: Path):
    with open(p, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows or [h.strip() for h in rows[0][:2]] != ["path", "label"]:
        raise UserError(f"{p}:1: an image list needs the header path,label")
    files, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise UserError(f"{p}:{line}: expected path,label")
        file = Path(row[0].strip())
        files.append(str(file if file.is_absolute() else p.parent / file))
        labels.append(row[1].strip())
    if not files:
        raise UserError(f"{p}: no rows")
    return files, labels


def _ids(where, labels, names):
    index = {n: i for i, n in enumerate(names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise UserError(f"{where}: class(es) {', '.join(unknown[:5])} not among the model's classes "
                        f"({', '.join(names[:8])}{', ...' if len(names) > 8 else ''})")
    return (np.array([index[v] for v in labels], dtype=np.int64),)


def decode(file: str, layout: dict) -> np.ndarray:
    """One image as uint8 [C, H, W]: converted to the mode, resized, centre-cropped (Pillow)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(file) as im:
            im = im.convert(layout["mode"])
            if layout.get("resize"):
                h, w = layout["resize"]
                im = im.resize((w, h), Image.BILINEAR)
            if layout.get("crop"):
                h, w = layout["crop"]
                left, top = (im.width - w) // 2, (im.height - h) // 2
                if left < 0 or top < 0:
                    raise UserError(f"{file}: {im.width}x{im.height} is smaller than crop {w}x{h}")
                im = im.crop((left, top, left + w, top + h))
            a = np.asarray(im, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as e:
        raise UserError(f"{file}: not a readable image ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def augment(x: torch.Tensor, cfg: dict, g: torch.Generator) -> torch.Tensor:
    """Training-only changes of one float image [C, H, W] in [0, 1], drawn from `g`: a horizontal flip,
    a random crop of the image padded by `crop` pixels, brightness and contrast jitter of +-`color`."""
    if cfg.get("flip") and torch.rand((), generator=g) < 0.5:
        x = x.flip(-1)
    pad = int(cfg.get("crop", 0))
    if pad:
        h, w = x.shape[-2:]
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect" if pad < min(h, w) else "constant")
        top, left = (int(v) for v in torch.randint(0, 2 * pad + 1, (2,), generator=g))
        x = padded[:, top:top + h, left:left + w]
    color = float(cfg.get("color", 0))
    if color:
        bright, contrast = (1 + (torch.rand(2, generator=g) * 2 - 1) * color).tolist()
        mean = x.mean()
        x = ((x - mean) * contrast + mean) * bright
        x = x.clamp(0, 1)
    return x


class _Batches(torch.utils.data.Dataset):
    """Decodes a whole batch per call (in a DataLoader worker when `workers` > 0): indices -> float [0, 1]
    images, augmented when the split trains with augmentation, normalised. A bad file comes back as its
    message (the main process raises it as one line, not a worker's traceback)."""

    def __init__(self, files, layout, aug, mean_std=None):
        self.files, self.layout, self.aug, self.mean_std = files, layout, aug, mean_std

    def __len__(self):
        return len(self.files)

    def __getitem__(self, job):
        key, idx = job
        try:
            arrays = [decode(self.files[i], self.layout) for i in idx]
        except UserError as e:
            return str(e)
        x = torch.from_numpy(np.stack(arrays)).float().div_(255)
        if self.aug:
            for k, i in enumerate(idx):
                g = torch.Generator().manual_seed(key * 1_000_003 + int(i))
                x[k] = augment(x[k], self.aug, g)
        if self.mean_std is not None:
            x = x.sub_(self.mean_std[0]).div_(self.mean_std[1])
        return x


class _Plan:
    """The batches of the coming epoch, (augmentation key, indices) each: the sampler of one DataLoader whose
    worker processes live as long as the split (set before each epoch, read in the main process)."""

    def __init__(self):
        self.jobs = []

    def __iter__(self):
        return iter(list(self.jobs))

    def __len__(self):
        return len(self.jobs)


class ImageFiles(Dataset):
    """One split of image files and their class ids, decoded batch by batch (never held in memory)."""

    def __init__(self, files, labels, layout, mean_std=None, aug=None, workers=0):
        fields = [np.asarray(files, dtype=object)] + ([labels] if labels is not None else [])
        super().__init__(fields, 1, rows=np.arange(len(files)))
        self.layout, self.mean_std, self.aug, self.workers = layout, mean_std, aug or None, workers
        self.key = 0
        self.plan, self.loader = _Plan(), None

    def order(self, shuffle, seed, epoch, rank=0, world=1, even=True):
        self.key = int(seed) * 7919 + int(epoch)  # the epoch's augmentation draws
        return super().order(shuffle, seed, epoch, rank, world, even)

    def batches(self, batch_size, order, drop_last=False):
        chunks = [order[s:s + batch_size].tolist() for s in range(0, len(order), batch_size)]
        if drop_last and chunks and len(chunks[-1]) < batch_size:
            chunks.pop()
        if self.loader is None:
            source = _Batches(list(self.fields[0]), self.layout, self.aug, self.mean_std)
            self.loader = torch.utils.data.DataLoader(
                source, sampler=self.plan, batch_size=None, num_workers=self.workers,
                persistent_workers=self.workers > 0, prefetch_factor=4 if self.workers else None)
        self.plan.jobs = [(self.key, c) for c in chunks]
        for idx, x in zip(chunks, self.loader):
            yield self._finish(idx, x)

    def _gather(self, idx):
        idx = idx.tolist()
        return self._finish(idx, _Batches(list(self.fields[0]), self.layout, None, self.mean_std)[(0, idx)])

    def _finish(self, idx, x):
        if isinstance(x, str):
            raise UserError(x)
        if self.sample_shapes[0] is not None:
            x = x.reshape(len(x), *self.sample_shapes[0])
        out = [x.to(self.device, non_blocking=True)]
        if self.has_target:
            out.append(torch.from_numpy(self.fields[1][idx]).to(self.device))
        return tuple(out)


def load(cfg: dict, input_names=None):
    """The splits of `cfg` (train.data with source: images) as a builder.data.Data."""
    layout = check(cfg)
    norm = cfg.get("normalize")
    mean_std = None
    if norm:
        mean_std = tuple(torch.tensor(norm[k], dtype=torch.float32).reshape(-1, 1, 1) for k in ("mean", "std"))
    aug, workers = cfg.get("augment") or None, int(cfg.get("workers", 0))
    if cfg.get("files"):
        per = cfg["files"]
        if not isinstance(per, dict) or "train" not in per or set(per) - {"train", "val", "test"}:
            raise UserError("train.data.files must map train (and optionally val, test) to a folder or CSV")
        files, labels, classes = list_images(per["train"])
        parts = [(files, labels)]
        for split in ("val", "test"):
            parts.append(list_images(per[split], classes)[:2] if per.get(split) else None)
    else:
        files, labels, classes = list_images(cfg["path"])
        rows = split_rows(len(files), cfg.get("split", [0.8, 0.1, 0.1]), cfg.get("seed", 0), cfg.get("split_shuffle", True))
        parts = [([files[i] for i in r], None if labels is None else labels[r]) for r in rows]
        parts += [None] * (3 - len(parts))
    if not parts[0][0]:
        raise UserError(f"train.data: no training images in {cfg.get('path') or cfg['files']['train']}")
    splits = [None if p is None or not p[0] else
              ImageFiles(p[0], p[1], layout, mean_std, aug if k == 0 else None, workers) for k, p in enumerate(parts)]
    layout["classes"] = classes
    info = {"layout": layout, "inputs": [None]}
    if classes:
        info["classes"], info["num_classes"] = list(classes), len(classes)
    if mean_std is not None:
        info["input_statistics"] = {0: mean_std}
    return Data(*splits, info=info)


def for_model(path, layout, input_names):
    """Image files, a folder (of class folders: labelled) or a glob, prepared as in training (predict, evaluate)."""
    files, labels, _ = list_images(path, layout.get("classes"))
    x = np.stack([decode(f, layout) for f in files]).astype(np.float32) / 255
    return [x], [None], labels


class ImageSource(Source):
    """`source: images` (this module's docstring): the folder's files, decoded batch by batch."""

    name, keys = "images", KEYS

    def check(self, cfg):
        return check(cfg)

    def load(self, cfg, input_names=None):
        return load(cfg, input_names)

    def for_model(self, path, layout, input_names):
        return for_model(path, layout, input_names)


SOURCE = ImageSource()

__all__ = ["SOURCE", "ImageFiles", "ImageSource", "check", "decode", "for_model", "list_images", "load"]
