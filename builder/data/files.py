"""Data from files: CSV tables, .npz/.npy arrays and IDX (the MNIST ubyte format, plain or .gz).

Each reader returns `(fields, n_inputs, info)` like the built-in sources. Plain .npy and uncompressed IDX
files come back as read-only memmaps, so large data is never read whole.
"""
from __future__ import annotations

import csv
import gzip
import zlib
from pathlib import Path

import numpy as np

from builder.core.errors import UserError

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _path(path, what):
    if not path:
        raise UserError(f"{what} data needs a 'path'")
    p = Path(path)
    if not p.exists():
        raise UserError(f"{what} data: no such file: {p}")
    return p


MISSING = {"", "na", "n/a", "nan", "null", "none", "?"}  # compared lower-cased, after stripping blanks
MISSING_POLICIES = ("error", "drop", "mean")
OTHER_DELIMITERS = {";": "';'", "\t": "'\\t' (tab)", "|": "'|'"}


def read_csv(path, target=None, categorical=(), drop=(), delimiter=",", missing="error", inputs=None, text=(),
             layout=None, rows=None):
    """Target column(s) by name, all other columns as features; text columns one-hot encoded.

    A column is categorical when declared (`categorical: [a, b]`) or when none of its values is a number;
    a numeric column with one text cell is an error naming that cell, never silently one-hot. Missing cells
    (empty, NA, n/a, nan, null, none, ?) are an error, or with `missing: drop` drop the row, or with
    `missing: mean` take the training mean of the column. `layout` (the training file's, from `info`)
    fixes kinds, categories, class ids and fill values, so every split and `build predict` encode alike.
    `inputs: {x: [a, b], adj: ["adj_*"]}` makes each group of columns (names or shell patterns) its own
    input, named for the network's input of that name (builder.data.naming); columns in no group are unused.
    `text: [review]` columns are not features: their raw strings come back in `info["text"]` for
    builder.data.text_columns to tokenise. `rows` (header, file line of each row, rows of cells) are read
    instead of the file: a table that came another way (`build serve`'s JSON rows), `path` then only names
    it in messages."""
    p = Path(path) if rows is not None else _path(path, "csv")
    if missing not in MISSING_POLICIES:
        raise UserError(f"csv data: missing must be one of {', '.join(MISSING_POLICIES)}, not {missing!r}")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise UserError(f"csv data: delimiter must be one character, not {delimiter!r}")
    header, lines, body = rows if rows is not None else _read_table(p, delimiter)
    layout = dict(layout or {})
    if "target" in layout and target is None:
        target = [t for t in layout["target"] if t in header] or None
    targets = [target] if isinstance(target, str) else list(target or [])
    carried_text = dict(layout.get("text") or {})
    texts = list(carried_text or ([text] if isinstance(text, str) else list(text or ())))
    for name in texts:
        if name not in header:
            raise UserError(f"csv data: text: {p} has no column '{name}' (columns: {', '.join(header)})")
    drop = list(drop) + [t for t in texts if t not in drop]
    for name in targets + list(drop):
        if name not in header:
            raise UserError(f"csv data: {p} has no column '{name}' (columns: {', '.join(header)})"
                            + _delimiter_hint(header, delimiter))
    groups = layout.get("inputs") or _groups(p, header, inputs, targets, drop)
    features = layout.get("features") or ([c for cols in groups.values() for c in cols] if groups else
                                          [n for n in header if n not in targets and n not in drop])
    for name in features:
        if name not in header:
            raise UserError(f"csv data: {p} has no column '{name}' (the model was trained on: {', '.join(features)})")
    index = {n: i for i, n in enumerate(header)}
    table = {n: [r[index[n]].strip() for r in body] for n in features + targets}
    declared = {categorical} if isinstance(categorical, str) else set(categorical or ())
    kinds = dict(layout.get("kinds") or {})
    for name in features + targets:
        if name not in kinds:
            kinds[name] = _kind(p, name, table[name], lines, name in declared)

    keep = np.ones(len(body), bool)
    for name in features + targets:
        gaps = np.array([v.lower() in MISSING for v in table[name]], bool)
        if not gaps.any():
            continue
        first = int(np.argmax(gaps))
        fillable = missing == "mean" and kinds[name] == "number" and name not in targets
        if missing == "error" or (missing == "mean" and not fillable):
            why = ("mean fills numeric feature columns only; " if missing == "mean" else "") + \
                "fill it, or set missing: drop" + (" or missing: mean" if missing == "error" else "")
            raise UserError(f"{p}:{lines[first]}: column '{name}': missing value {table[name][first]!r} ({why})")
        if missing == "drop":
            keep &= ~gaps
    fill = dict(layout.get("fill") or {})
    columns = {k: list(v) for k, v in (layout.get("categories") or {}).items()}
    def encode(names):
        encoded = []
        for name in names:
            values, rows = table[name], lines
            if kinds[name] == "number":
                numbers = _numbers(p, name, values, rows, keep, missing == "mean")
                if missing == "mean":
                    gaps = np.isnan(numbers)
                    if name not in fill:
                        fill[name] = float(np.nanmean(numbers[keep])) if (~gaps & keep).any() else 0.0
                    numbers[gaps] = fill[name]
                encoded.append(numbers.reshape(-1, 1))
            else:
                cats = columns.setdefault(name, sorted({v for v, k in zip(values, keep) if k}))
                if "categories" not in layout:  # training data: is this a category, or free text / ids?
                    _check_vocabulary(p, name, len(cats), int(keep.sum()))
                encoded.append(_one_hot(_codes(p, name, values, rows, keep, cats), len(cats)))
        return np.concatenate(encoded, axis=1)[keep] if encoded else np.zeros((int(keep.sum()), 0), np.float32)

    xs = [encode(cols) for cols in groups.values()] if groups else [encode(features)] if features or not texts else []
    x = xs[0] if xs else np.zeros((int(keep.sum()), 0), np.float32)
    info = {"feature_columns": features, "columns": columns, "inputs": list(groups) if groups else [None]}
    layout = {"delimiter": delimiter, "missing": missing, "features": features, "kinds": kinds,
              "categories": columns, "fill": fill, "target": targets, "num_features": int(x.shape[1])}
    if groups:
        layout["inputs"] = groups
    if texts:
        index = {n: i for i, n in enumerate(header)}
        info["text"] = {t: [r[index[t]] for r, k in zip(body, keep) if k] for t in texts}
        layout["text"] = carried_text
        if not xs:
            info["inputs"] = []
    info["layout"] = layout
    if not targets:
        return xs, len(xs), info
    if len(targets) == 1 and kinds[targets[0]] == "category":
        name = targets[0]
        values = table[name]
        classes = layout.get("classes") or _class_order({v for v, k in zip(values, keep) if k})
        y = _codes(p, name, values, lines, keep, classes, what="class")[keep]
        layout["classes"] = classes
        info["classes"], info["num_classes"] = classes, len(classes)
    else:
        y = np.concatenate([_numbers(p, t, table[t], lines, keep, False).reshape(-1, 1) for t in targets],
                           axis=1)[keep]
    return [*xs, y], len(xs), info


def _groups(p, header, inputs, targets, drop) -> dict:
    """`inputs: {name: [column or pattern, ...]}` as {name: [columns]} in the file's order, or {}."""
    import fnmatch

    if not inputs:
        return {}
    if not isinstance(inputs, dict) or not all(isinstance(v, (list, str)) for v in inputs.values()):
        raise UserError("csv data: inputs must map each input name to a list of columns, e.g. {x: [a, b], adj: [adj_*]}")
    out = {}
    for name, wanted in inputs.items():
        cols = []
        for pattern in [wanted] if isinstance(wanted, str) else wanted:
            hits = [c for c in header if fnmatch.fnmatchcase(c, str(pattern)) and c not in targets and c not in drop]
            if not hits:
                raise UserError(f"csv data: inputs.{name}: {p} has no column {pattern!r} (columns: {', '.join(header)})")
            cols += [c for c in hits if c not in cols]
        out[str(name)] = cols
    return out


def column_positions(layout: dict) -> list[dict]:
    """Where each CSV column lands in a sample's feature row, in read_csv's encoding order: a number column
    one slot (`at`), a category column `width` one-hot slots in the order of `categories` (`fill`: the
    training mean a missing number takes under `missing: mean`). For anyone feeding the model without
    this package (ONNX metadata `builder.input_columns`)."""
    out, at = [], 0
    fill = layout.get("fill") or {}
    for name in layout.get("features") or ():
        if (layout.get("kinds") or {}).get(name) == "category":
            cats = list((layout.get("categories") or {}).get(name) or ())
            out.append({"column": name, "kind": "category", "at": at, "width": len(cats), "categories": cats})
            at += len(cats)
        else:
            out.append({"column": name, "kind": "number", "at": at, "width": 1,
                        **({"fill": fill[name]} if name in fill else {})})
            at += 1
    return out


MAX_CATEGORIES = 1000  # a category column with more distinct values than this ...
MAX_CATEGORY_SHARE = 0.5  # ... that are more than half of its rows is free text or ids, not categories
MAX_ONE_HOT_BYTES = 2_000_000_000


def _check_vocabulary(p, name, size: int, rows: int) -> None:
    """Refuse a category column whose vocabulary is absurd for its row count (one-hot would be rows x rows)."""
    if size > MAX_CATEGORIES and size > MAX_CATEGORY_SHARE * rows:
        raise UserError(f"csv data: {p}: column '{name}' has {size:,} distinct values in {rows:,} rows: too many "
                        f"for a category (one-hot columns); it looks like free text or an id. Drop it "
                        f"(drop: [{name}]) or read it as text (text: [{name}])")


def _one_hot(codes: np.ndarray, size: int) -> np.ndarray:
    """rows x size float32 with a 1 at each row's code, built by indexing (np.eye(size) would be size^2)."""
    if len(codes) * size * 4 > MAX_ONE_HOT_BYTES:
        raise UserError(f"csv data: one-hot encoding {len(codes):,} rows x {size:,} categories needs "
                        f"{len(codes) * size * 4 / 1e9:.1f} GB; drop the column or read it as text")
    out = np.zeros((len(codes), size), np.float32)
    out[np.arange(len(codes)), codes] = 1.0
    return out


def check_layout(layout, where: str) -> dict:
    """A CSV layout read from a file (ONNX metadata, a checkpoint): the types read_csv relies on, else a
    one-line UserError."""
    def strings(v):
        return isinstance(v, list) and all(isinstance(s, str) for s in v)

    def mapping(v, check):
        return isinstance(v, dict) and all(isinstance(k, str) and check(x) for k, x in v.items())

    checks = {"delimiter": lambda v: isinstance(v, str) and len(v) == 1,
              "missing": lambda v: v in MISSING_POLICIES, "features": strings,
              "target": lambda v: isinstance(v, str) or strings(v),  # a datasets source names one column
              "classes": lambda v: v is None or strings(v),
              "kinds": lambda v: mapping(v, lambda k: k in ("number", "category")),
              "categories": lambda v: mapping(v, strings),
              "fill": lambda v: mapping(v, lambda x: isinstance(x, (int, float)) and not isinstance(x, bool)),
              "num_features": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0}
    if not isinstance(layout, dict):
        raise UserError(f"{where}: the CSV layout is not a mapping")
    for key, check in checks.items():
        if key in layout and not check(layout[key]):
            raise UserError(f"{where}: the CSV layout's {key} is not what this tool writes")
    return layout


def _read_table(p, delimiter):
    """Header, the file line of each data row, and the rows; a ragged row is an error naming its line."""
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            if header is None:
                raise UserError(f"csv data: {p} is empty")
            header = [h.strip() for h in header]
            seen = {}
            for i, name in enumerate(header):
                if name in seen:  # by name, the second would silently stand for both
                    raise UserError(f"{p}:{reader.line_num}: column name {name!r} appears twice (columns "
                                    f"{seen[name] + 1} and {i + 1}): rename one")
                seen[name] = i
            lines, body = [], []
            for row in reader:
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != len(header):
                    shown = delimiter.join(row)
                    raise UserError(f"{p}:{reader.line_num}: row has {len(row)} fields, the header has "
                                    f"{len(header)} ({shown[:60]!r})" + _delimiter_hint(header, delimiter))
                lines.append(reader.line_num)
                body.append(row)
    except UnicodeDecodeError as e:
        raise UserError(f"csv data: {p} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    except csv.Error as e:
        raise UserError(f"csv data: {p}: {e}") from None
    if not body:
        raise UserError(f"csv data: {p} has a header but no rows")
    return header, lines, body


def _delimiter_hint(header, delimiter) -> str:
    if len(header) != 1:
        return ""
    for other, shown in OTHER_DELIMITERS.items():
        if other != delimiter and other in header[0]:
            return f"; the header looks {shown}-separated: set delimiter: {shown.split()[0]}"
    return ""


def _is_number(text) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _kind(p, name, values, lines, declared):
    """'category' (declared, or text-only) or 'number'; a numeric column with a text cell is an error
    naming the cell."""
    if declared:
        return "category"
    present = [(v, line) for v, line in zip(values, lines) if v.lower() not in MISSING]
    numeric = [_is_number(v) for v, _ in present]
    if present and not any(numeric):
        return "category"
    if not all(numeric):
        v, line = present[numeric.index(False)]
        raise UserError(f"{p}:{line}: column '{name}': {v!r} is not a number (the column's other values are "
                        f"numbers; to treat it as a category, list it in categorical: [{name}])")
    return "number"


def _numbers(p, name, values, lines, keep, allow_missing):
    out = np.empty(len(values), np.float32)
    for i, v in enumerate(values):
        if v.lower() in MISSING:
            out[i] = np.nan
            continue
        try:
            out[i] = float(v)
        except ValueError:
            if keep[i]:
                raise UserError(f"{p}:{lines[i]}: column '{name}': {v!r} is not a number "
                                "(the training file's column is numeric)") from None
            out[i] = np.nan
    return out


def _codes(p, name, values, lines, keep, cats, what="category"):
    index = {c: i for i, c in enumerate(cats)}
    codes = np.zeros(len(values), np.int64)
    for i, v in enumerate(values):
        if not keep[i]:
            continue
        if v not in index:
            shown = ", ".join(map(repr, cats[:8])) + (", ..." if len(cats) > 8 else "")
            raise UserError(f"{p}:{lines[i]}: column '{name}': {what} {v!r} was not seen in training "
                            f"(known: {shown})")
        codes[i] = index[v]
    return codes


def _class_order(values) -> list:
    """Class ids: the class names sorted (as numbers when they all are numbers, so 2 comes before 10)."""
    if all(_is_number(v) for v in values):
        return sorted(values, key=float)
    return sorted(values)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def read_npz(path, x="x", y="y", classes="classes", input_names=None):
    """Input arrays (named like the network's inputs, else `x`) and `y`, if present, from a .npz archive
    (read whole: zip members cannot be mapped); a `classes` array (if present) names the class ids of `y`
    in order. Never unpickles. The array names are kept in the layout, so predict and evaluate read the
    same arrays (builder.data.naming)."""
    from builder.data.naming import npz_names

    p = _path(path, "npz")
    try:
        with np.load(p, allow_pickle=False) as z:
            names = npz_names(z.files, input_names, x, y, f"npz data: {p}")
            fields = [z[n] for n in names] + ([z[y]] if y and y in z else [])
            labels = [str(c) for c in z[classes].tolist()] if classes and classes in z else None
    except UserError:
        raise
    except Exception as e:  # BadZipFile, zlib.error, EOFError, ValueError, a SyntaxError from a damaged header
        raise UserError(f"npz data: {p} is not a readable .npz archive ({_first_line(e)})") from None
    info = {"classes": labels, "num_classes": len(labels)} if labels else {}
    info["inputs"] = names if len(names) > 1 or (input_names and names[0] in input_names) else [None]
    info["layout"] = {"source": "npz", "arrays": names, "target": [y] if y else []}
    return fields, len(names), info


def read_npy(x, y=None):
    """Arrays from .npy files as read-only memmaps: rows are read only when a batch needs them."""
    fields = [_npy(x)]
    if y:
        fields.append(_npy(y))
    return fields, 1, {"layout": {"source": "npy"}}


def _npy(path):
    """A .npy file as a read-only memmap; truncated files, object (pickled) arrays and other damage are
    one-line errors."""
    p = _path(path, "npy")
    try:
        with open(p, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except Exception as e:  # EOFError, ValueError, a SyntaxError from a damaged header
        raise UserError(f"npy data: {p} is not a readable .npy array ({_first_line(e)})") from None
    if dtype.hasobject:
        raise UserError(f"npy data: {p} holds Python objects (a pickled {dtype} array); only numeric arrays "
                        "are read (pickles could run code)")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    size = p.stat().st_size
    if size < need:
        raise UserError(f"npy data: {p} is truncated: its header says {dtype} {list(shape)} "
                        f"({need:,} bytes), the file holds {size:,}")
    try:
        return np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise UserError(f"npy data: {p} is not a readable .npy array ({_first_line(e)})") from None


def read_idx(path):
    """One IDX array (magic 0 0 type ndim, big-endian int32 dims, then data); .gz files are read whole."""
    p = _path(path, "idx")
    opener = gzip.open if p.suffix == ".gz" else open
    try:
        with opener(p, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_TYPES:
                raise UserError(f"idx data: {p} is not an IDX file (bad magic {head.hex() or 'none: empty file'})")
            dtype, ndim = np.dtype(IDX_TYPES[head[2]]), head[3]
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim or ndim == 0:
                raise UserError(f"idx data: {p} is truncated inside its header ({ndim} dims announced)")
            shape = tuple(int(d) for d in np.frombuffer(dims, dtype=">i4"))
            if any(d < 0 for d in shape):
                raise UserError(f"idx data: {p}: negative size in its header {list(shape)}")
            count = int(np.prod(shape, dtype=np.int64))
            if p.suffix == ".gz":
                data = np.frombuffer(f.read(), dtype=dtype)
                if data.size != count:
                    raise UserError(f"idx data: {p} holds {data.size:,} values, its header says {list(shape)} "
                                    f"({count:,})" + (": the file is truncated" if data.size < count else ""))
                return data.reshape(shape)
    except (OSError, EOFError, zlib.error, ValueError) as e:  # gzip: truncated or corrupt stream
        raise UserError(f"idx data: {p} is truncated or corrupt ({_first_line(e)})") from None
    offset = 4 + 4 * ndim
    size = p.stat().st_size
    if size - offset < count * dtype.itemsize:
        raise UserError(f"idx data: {p} is truncated: its header says {list(shape)} {dtype.name} "
                        f"({count * dtype.itemsize:,} bytes of data), the file holds {max(size - offset, 0):,}")
    if count == 0:
        return np.zeros(shape, dtype)
    return np.memmap(p, dtype=dtype, mode="r", offset=offset, shape=shape)


def read_idx_pair(images, labels=None):
    """MNIST-style images (N, H, W) as (N, 1, H, W) plus their labels as int64."""
    x = read_idx(images)
    if x.ndim == 3:
        x = x.reshape(x.shape[0], 1, *x.shape[1:])
    fields = [x]
    if labels:
        y = read_idx(labels)
        if len(y) != len(x):
            raise UserError(f"idx data: {len(x)} images but {len(y)} labels")
        fields.append(np.asarray(y, dtype=np.int64))
    return fields, 1, {}
