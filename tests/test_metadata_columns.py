"""LAION metadata parts whose columns are named otherwise (e.g. re-released parts): the config
names the columns; nothing in the code assumes LAION-400M's names."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tailstudy.acquire.laionet import label_part
from tailstudy.freq.sources import iter_caption_batches


def test_parts_with_other_column_names(tmp_path):
    part = tmp_path / "part-00000.parquet"
    captions = ["a goldfish in a bowl", "a tench and a goldfish", "a red tench", None]
    pq.write_table(
        pa.table(
            {
                "url": [f"http://x/{i}.jpg" for i in range(4)],
                "caption": captions,
                "punsafe": [0.01, 0.2, 0.0, 0.5],
            }
        ),
        part,
    )
    counts = label_part(
        part,
        3,
        {"goldfish": "n01443537", "tench": "n01440764"},
        tmp_path / "label.parquet",
        url_column="url",
        caption_column="caption",
        nsfw_column=None,
    )
    rows = pd.read_parquet(tmp_path / "label.parquet")
    assert counts["rows"] == 4 and counts["single_label"] == 2
    assert rows["wnid"].tolist() == ["n01443537", "n01440764"]
    assert rows["row_id"].tolist() == [300_000_000, 300_000_002]
    assert rows["caption"].tolist() == [captions[0], captions[2]]
    assert "nsfw" not in rows.columns
    read = [x for a in iter_caption_batches(part, "caption") for x in a.to_pylist()]
    assert read == captions
