"""One sentence for a write the operating system refused (full disk, read-only or forbidden directory).

Every sslkit writer goes through a temporary file and a rename (``sslkit.atomic_files``,
``engine/checkpoints.py``), so when a write fails the files already there are whole; the sentence
says so, names the file, and says how to continue.
"""

from __future__ import annotations

import errno

__all__ = ["WRITE_ERRNOS", "write_failure_message"]

WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})

_WHAT_TO_DO = {
    errno.ENOSPC: "free disk space", errno.EDQUOT: "free space within your disk quota",
    errno.EFBIG: "raise the file-size limit (ulimit -f)",
}


def write_failure_message(err: OSError, verb: str) -> str:
    """``could not write 'F': <reason>. Files written before are whole; <fix>, then <how to continue>.``"""
    target = err.filename or ""
    reason = err.strerror or str(err)
    fix = _WHAT_TO_DO.get(err.errno, "choose a writable --out (or make that directory writable)")
    again = "then continue the run with --resume" if verb == "pretrain" else "then run the command again"
    where = f"could not write '{target}'" if target else "a write failed"
    return f"{where}: {reason}. Files written before are whole; {fix}, {again}."
