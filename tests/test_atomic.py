"""Files written whole or not at all (`llmkit.atomic`): a block that raises leaves the old file and no partial one."""

from __future__ import annotations

import pytest

from llmkit.atomic import atomic_path, atomic_text


def test_the_new_content_replaces_the_file_only_when_the_block_ends(tmp_path) -> None:
    target = tmp_path / "out" / "records.jsonl"
    with atomic_text(target) as stream:
        stream.write("new\n")
        assert not target.exists()  # nothing is visible until the block ends
    assert target.read_text() == "new\n" and list(target.parent.iterdir()) == [target]


def test_a_block_that_raises_keeps_the_old_file_and_leaves_no_partial(tmp_path) -> None:
    target = tmp_path / "index.bin"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), atomic_path(target) as partial:
        partial.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and list(tmp_path.iterdir()) == [target]
