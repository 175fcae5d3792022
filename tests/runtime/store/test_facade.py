from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import inspect

from finsent.core.records import ScoredItem
from finsent.runtime.store import Commit, Store, metadata, scored_items


def test_a_store_on_a_new_path_makes_its_folder_and_every_table(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'a' / 'b' / 'store.db'}")
    try:
        assert (tmp_path / "a" / "b" / "store.db").exists()
        assert set(inspect(store.engine).get_table_names()) == set(metadata.tables)
    finally:
        store.close()


def test_count_and_query_filter_and_order(
    store: Store, make_scored: Callable[[int], ScoredItem]
) -> None:
    store.commit(Commit(stage="router", scored=[make_scored(i) for i in (3, 1, 2)]))
    assert store.count(scored_items) == 3
    rows = store.query(scored_items, scored_items.c.id != "s2", order_by=[scored_items.c.id])
    assert [r["id"] for r in rows] == ["s1", "s3"]
