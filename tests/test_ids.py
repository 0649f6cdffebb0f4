from __future__ import annotations

import uuid

from memberops.ids import new_id, uuid7


class TestUuid7:
    def test_version_and_variant(self) -> None:
        value = uuid7()
        assert value.version == 7
        assert value.variant == uuid.RFC_4122

    def test_ids_sort_in_creation_order(self) -> None:
        ids = [new_id() for _ in range(5_000)]
        assert ids == sorted(ids)
        assert len(set(ids)) == len(ids)
