"""Reading caption/URL metadata files (Parquet, or TSV with or without a header) in batches.

Columns are named as in the file; in a TSV without a header they are 0-based field indices
given as strings ("0", "1", ...), the convention of the frequency engine (CC-12M's ``cc12m.tsv``
is ``url<TAB>caption`` with no header). Every failure names the file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa

from tailstudy.freq.sources import is_parquet, open_web_tsv, tsv_field
from tailstudy.io import UserError

log = logging.getLogger(__name__)

#: Global row id of row ``r`` of metadata file ``part``: ``part * ROW_ID_STRIDE + r`` (§1.2).
ROW_ID_STRIDE = 10**8


def row_ids(part: int, start: int, n: int):
    import numpy as np

    if start + n > ROW_ID_STRIDE:
        raise UserError(f"metadata part {part} has more than {ROW_ID_STRIDE:,} rows; split it")
    return part * ROW_ID_STRIDE + np.arange(start, start + n, dtype=np.int64)


def iter_metadata(
    path: str | Path,
    columns: Mapping[str, str],
    *,
    header: bool = True,
    optional: Mapping[str, str] | None = None,
    batch_size: int = 262_144,
) -> Iterator[pd.DataFrame]:
    """Batches of ``path`` as DataFrames whose columns are renamed ``{file column: name}`` from
    ``columns`` (all required) and ``optional`` (kept when the file has them).

    Missing required columns, an unreadable file or a missing file raise UserError naming the
    file. TSV lines with the wrong number of fields are skipped (and counted in the log).
    """
    path = Path(path)
    optional = dict(optional or {})
    if not path.is_file():
        raise UserError(f"metadata file {path} does not exist")
    if is_parquet(path):
        import pyarrow.parquet as pq

        try:
            f = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"cannot read Parquet file {path}: {e}") from None
        names = f.schema_arrow.names
        _check_columns(path, names, columns)
        mapping = {**{c: n for c, n in optional.items() if c in names}, **columns}
        try:
            for batch in f.iter_batches(batch_size=batch_size, columns=list(mapping)):
                yield batch.to_pandas().rename(columns=mapping)
        except (pa.ArrowInvalid, OSError) as e:
            raise UserError(f"cannot read Parquet file {path}: {e}") from None
        return
    yield from _iter_tsv(path, columns, optional, header, batch_size)


def _check_columns(path: Path, names: list[str], columns: Mapping[str, str]) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise UserError(
            f"{path} has no column {', '.join(map(repr, missing))} "
            f"(columns: {', '.join(names[:20])}); set the dataset's column names"
        )


def _iter_tsv(path, columns, optional, header, batch_size) -> Iterator[pd.DataFrame]:
    def field(c: str) -> str:
        return tsv_field(c, header, path)

    try:
        reader, bad = open_web_tsv(
            path,
            {field(c): pa.large_string() for c in [*columns, *optional]},
            header=header,
            use_threads=True,
        )
    except pa.ArrowInvalid as e:
        raise UserError(f"cannot read TSV {path}: {e}") from None
    names = reader.schema.names
    wanted = {field(c): c for c in columns}
    _check_columns(path, names, wanted)
    mapping = {f: columns[c] for f, c in wanted.items()}
    mapping.update({field(c): n for c, n in optional.items() if field(c) in names})
    rows = 0
    try:
        for batch in reader:
            df = batch.select(list(mapping)).to_pandas().rename(columns=mapping)
            rows += len(df)
            for start in range(0, len(df), batch_size):
                yield df.iloc[start : start + batch_size].reset_index(drop=True)
    except pa.ArrowInvalid as e:
        raise UserError(f"cannot read TSV {path} after {rows} rows: {e}") from None
    if bad[0]:
        log.warning("%s: skipped %d lines with the wrong number of fields", path, bad[0])
