from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.atomic import write_text_atomically


@pytest.mark.parametrize("durable", [False, True])
def test_a_file_is_replaced_whole_or_left_as_it_was(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "state.json"
    write_text_atomically(path, "first", durable=durable)
    write_text_atomically(path, "second", durable=durable)
    assert path.read_text(encoding="utf-8") == "second"
    with pytest.raises(UnicodeEncodeError):  # fails halfway through writing the new content
        write_text_atomically(path, "third \ud800", durable=durable)
    assert path.read_text(encoding="utf-8") == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]  # no staged file left
