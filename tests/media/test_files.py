"""Writing a media file whole: what a reader or a crash may see of it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import pytest

from appliance.media.files import TMP_PREFIX, handover_name, is_handover_name, write_atomically


def test_the_file_appears_whole_and_private_and_its_size_is_returned(tmp_path: Path) -> None:
    target = tmp_path / handover_name()
    assert write_atomically(target, lambda fh: fh.write(b"x" * 5000)) == 5000
    assert target.read_bytes() == b"x" * 5000 and os.listdir(tmp_path) == [target.name]
    assert target.stat().st_mode & 0o777 == 0o600


def test_a_write_that_fails_midway_leaves_neither_the_file_nor_its_temporary(tmp_path: Path) -> None:
    def half_then_fail(fh: BinaryIO) -> None:
        fh.write(b"half a PNG")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_atomically(tmp_path / handover_name(), half_then_fail)
    assert os.listdir(tmp_path) == []


def test_hand_over_names_are_random_and_temporaries_are_never_one() -> None:
    names = {handover_name() for _ in range(50)}
    assert len(names) == 50 and all(is_handover_name(name) for name in names)
    assert not is_handover_name(TMP_PREFIX + "0" * 16) and not is_handover_name("new-x.png")
