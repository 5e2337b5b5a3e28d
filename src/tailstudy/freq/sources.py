"""Inputs and outputs of class-frequency estimation.

* Caption shards: Parquet, or TSV (optionally compressed, e.g. ``.tsv.gz``), streamed in Arrow
  record batches, one text column read.
* MetaCLIP datacards: a JSON object ``{entry: count}`` (METHODS §2.5).
* Frequency tables (METHODS §0.3): ``<class name>\\t<count>`` per line, no header. The label-order
  file is the canonical one; :func:`sorted_sibling` names its copy sorted by count.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from tailstudy.io import UserError, atomic_path

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = (".parquet", ".pq")


def is_parquet(path: str | Path) -> bool:
    """Parquet by suffix, else by its ``PAR1`` magic bytes."""
    path = Path(path)
    if path.suffix.lower() in PARQUET_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"PAR1"
    except OSError:
        return False


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given; a folder stands for its ``*.parquet``/``*.pq``/``*.tsv*`` files, sorted."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(
                f
                for f in p.iterdir()
                if f.is_file() and (f.suffix.lower() in PARQUET_SUFFIXES or ".tsv" in f.suffixes)
            )
            if not found:
                raise UserError(f"folder {p} holds no .parquet or .tsv shards")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"caption shard {p} does not exist")
    return out


def parquet_row_groups(path: str | Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_row_groups


def tsv_field(column: str, header: bool, path: str | Path) -> str:
    """Arrow's name of a TSV column: the name itself with a header, ``f<i>`` for the 0-based
    field index ``i`` without one."""
    if header:
        return column
    if not str(column).isdigit():
        raise UserError(
            f"{path} is read without a header: a column must be a 0-based field index, "
            f"got {column!r}"
        )
    return f"f{int(column)}"


def open_web_tsv(
    path: str | Path,
    column_types: dict[str, pa.DataType],
    *,
    header: bool,
    include_columns: Sequence[str] = (),
    use_threads: bool = False,
):
    """A streaming reader of a web-metadata TSV: tab-separated, no quoting, one record per line,
    compression detected from the name. Lines with the wrong number of fields are skipped; the
    returned one-element list counts them as the reader goes. Raises Arrow's errors."""
    import pyarrow.csv as pcsv

    bad = [0]

    def skip(row) -> str:
        bad[0] += 1
        return "skip"

    reader = pcsv.open_csv(
        pa.input_stream(str(path), compression="detect"),
        read_options=pcsv.ReadOptions(
            use_threads=use_threads, block_size=16 << 20, autogenerate_column_names=not header
        ),
        parse_options=pcsv.ParseOptions(
            delimiter="\t", quote_char=False, escape_char=False, invalid_row_handler=skip
        ),
        convert_options=pcsv.ConvertOptions(
            include_columns=list(include_columns), column_types=column_types
        ),
    )
    return reader, bad


def iter_caption_batches(
    path: str | Path,
    column: str,
    *,
    header: bool = True,
    batch_size: int = 65_536,
    row_groups: Sequence[int] | None = None,
    skipped: list[int] | None = None,
) -> Iterator[pa.Array]:
    """Stream one text column of a Parquet or TSV shard as Arrow arrays.

    TSV: tab-separated, no quoting, one record per line; with ``header=False`` ``column`` is a
    0-based field index. Lines with the wrong number of fields are skipped; their number is
    added to ``skipped[0]`` when a one-element list is given. ``row_groups`` (Parquet only)
    restricts the read to those row groups.
    """
    path = Path(path)
    if is_parquet(path):
        import pyarrow.parquet as pq

        f = pq.ParquetFile(path)
        names = f.schema_arrow.names
        if column not in names:
            raise UserError(f"{path} has no column {column!r} (columns: {', '.join(names)})")
        for batch in f.iter_batches(
            batch_size=batch_size, columns=[column], row_groups=row_groups, use_threads=False
        ):
            yield batch.column(0)
        return
    if row_groups is not None:
        raise ValueError("row_groups only applies to Parquet shards")
    col = tsv_field(column, header, path)
    try:
        reader, bad = open_web_tsv(
            path, {col: pa.large_string()}, header=header, include_columns=[col]
        )
    except (pa.ArrowInvalid, KeyError) as e:
        raise UserError(f"cannot read column {column!r} of TSV {path}: {e}") from None
    for batch in reader:
        if batch.num_columns == 0:
            raise UserError(f"TSV {path} has no column {column!r}")
        yield batch.column(0)
    if bad[0]:
        log.warning("%s: skipped %d lines with the wrong number of fields", path, bad[0])
        if skipped is not None:
            skipped[0] += bad[0]


def read_datacard(path: str | Path) -> tuple[list[str], np.ndarray]:
    """A MetaCLIP datacard: entries and their counts (int64)."""
    try:
        obj = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"datacard {path} does not exist") from None
    except json.JSONDecodeError as e:
        raise UserError(f"datacard {path} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise UserError(f"datacard {path}: expected a JSON object entry -> count")
    bad = next((k for k, v in obj.items() if not isinstance(v, int) or isinstance(v, bool)), None)
    if bad is not None:
        raise UserError(f"datacard {path}: count of {bad!r} is not an integer")
    return list(obj), np.fromiter(obj.values(), dtype=np.int64, count=len(obj))


def read_table(path: str | Path) -> tuple[list[str], np.ndarray]:
    """A frequency table (``name<TAB>count`` lines, either order): names and int64 counts."""
    names, counts = [], []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"frequency table {path} does not exist") from None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.rpartition("\t")
        try:
            if not sep:
                raise ValueError
            counts.append(int(value))
        except ValueError:
            raise UserError(f"{path}:{i}: expected '<name><TAB><integer count>'") from None
        names.append(name)
    return names, np.array(counts, dtype=np.int64)


def table_text(names: Sequence[str], counts: Sequence[int] | np.ndarray) -> str:
    return "".join(f"{n}\t{int(c)}\n" for n, c in zip(names, counts, strict=True))


def write_table(path: str | Path, names: Sequence[str], counts: Sequence[int] | np.ndarray) -> None:
    """Write a frequency table atomically, lines in the given order."""
    bad = next((n for n in names if "\t" in n or "\n" in n), None)
    if bad is not None:
        raise UserError(f"class name {bad!r} holds a tab or newline")
    with atomic_path(path) as tmp:
        tmp.write_text(table_text(names, counts), encoding="utf-8")


def sorted_sibling(path: str | Path) -> Path:
    """Where the count-sorted copy of a label-order table goes.

    ``x_ori.tsv`` -> ``x.tsv`` (the spec's ``_ori`` convention); any other name gets ``_sorted``
    before its suffix: ``x.tsv`` -> ``x_sorted.tsv``, ``x`` -> ``x_sorted``.
    """
    path = Path(path)
    stem, suffix = path.stem, path.suffix
    if stem.endswith("_ori") and len(stem) > 4:
        return path.with_name(stem[:-4] + suffix)
    return path.with_name(f"{stem}_sorted{suffix}")


def sort_by_count(names: Sequence[str], counts: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Descending by count; ties keep label order."""
    order = np.argsort(-np.asarray(counts, dtype=np.int64), kind="stable")
    return [names[i] for i in order], np.asarray(counts)[order]


def write_count_tables(
    path: str | Path, names: Sequence[str], counts: np.ndarray, sorted_copy: bool = True
) -> list[Path]:
    """The label-order table at ``path`` and (optionally) its count-sorted sibling."""
    write_table(path, names, counts)
    written = [Path(path)]
    if sorted_copy:
        sib = sorted_sibling(path)
        write_table(sib, *sort_by_count(names, counts))
        written.append(sib)
    return written


def align_by_name(
    tables: Sequence[tuple[str, list[str], np.ndarray]], intersect: bool = False
) -> tuple[list[str], np.ndarray]:
    """Align tables ``(label, names, counts)`` by class name, never by position.

    Returns the class names (in the first table's order) and a ``classes x tables`` int64 matrix.
    Every table must list each name once and, unless ``intersect``, the same set of names;
    with ``intersect`` only the names common to all tables are kept.
    """
    for label, names, _ in tables:
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise UserError(f"table {label} lists class {dup!r} more than once")
    first = tables[0][1]
    common = set(first).intersection(*(set(n) for _, n, _ in tables[1:]))
    if not intersect:
        for label, names, _ in tables[1:]:
            diff = set(first) ^ set(names)
            if diff:
                raise UserError(
                    f"table {label} and table {tables[0][0]} list different classes "
                    f"({len(diff)} differ, e.g. {sorted(diff)[0]!r}); align them first or "
                    "keep the common classes only"
                )
    keep = [n for n in first if n in common]
    if not keep:
        raise UserError("the tables have no class name in common")
    matrix = np.empty((len(keep), len(tables)), dtype=np.int64)
    for j, (_, names, counts) in enumerate(tables):
        pos = {n: i for i, n in enumerate(names)}
        matrix[:, j] = [counts[pos[n]] for n in keep]
    return keep, matrix
