"""`Blake3Checker`: doit's `check_file_uptodate` on BLAKE3, with batchit's cheap stat identity first."""

from __future__ import annotations

import os
import time
from typing import Any

from doit.dependency import FileChangedChecker

from batchit.fsutil import is_racy
from batchit.hashing import hash_file


class Blake3Checker(FileChangedChecker):  # type: ignore[misc]  # doit ships no type hints
    """doit's file checker for `DOIT_CONFIG = {"check_file_uptodate": Blake3Checker}`, on BLAKE3.

    A file whose (size, mtime_ns, ctime_ns, inode) did not move is unchanged, one whose size changed
    is changed, and otherwise the BLAKE3 hash decides: a touch re-hashes a file and runs nothing.
    A file hashed within a timestamp tick of its last write may be rewritten in that tick without
    its stat moving, so its state then keeps no stat to compare (`batchit.fsutil.is_racy`).
    """

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        """True when `file_path` differs from the saved `state` [size, mtime_ns, ctime_ns, inode, blake3]."""
        size, mtime_ns, ctime_ns, inode, digest = state
        if (file_stat.st_size, file_stat.st_mtime_ns, file_stat.st_ctime_ns, file_stat.st_ino) == (
            size,
            mtime_ns,
            ctime_ns,
            inode,
        ):
            return False
        if file_stat.st_size != size:
            return True
        return bool(digest != hash_file(file_path))

    def get_state(self, dep: str, current_state: Any) -> list[Any] | None:
        """The state to save after a successful run (None: unchanged since `current_state`)."""
        st = os.stat(dep)
        stat = (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if current_state and tuple(current_state[:4]) == stat:
            return None
        read_from = time.time_ns()
        digest = hash_file(dep)
        if is_racy(stat, read_from):
            stat = (st.st_size, -1, -1, -1)  # matches no stat: the next check hashes the file
        return [*stat, digest]
