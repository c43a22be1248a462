"""``python chaos_launcher.py ARGS`` = ``sslkit ARGS``, killed with SIGKILL just before a chosen file is replaced.

``SSLKIT_CHAOS_KILL=NAME:N`` makes the process kill itself the N-th time it is about to rename a
completed temporary file onto ``NAME`` (the instant of an atomic write where the new bytes exist only
under the temporary name). Used by test_chaos.py to land kills inside checkpoint, export and report
writes, which random kill times hit only by luck.
"""

import os
import signal
import sys

target = os.environ.get("SSLKIT_CHAOS_KILL")
if target:
    name, nth = target.rsplit(":", 1)
    seen = [0]
    _replace = os.replace

    def _replace_or_die(src, dst, *args, **kwargs):
        if os.path.basename(str(dst)) == name:
            seen[0] += 1
            if seen[0] == int(nth):
                os.kill(os.getpid(), signal.SIGKILL)
        return _replace(src, dst, *args, **kwargs)

    os.replace = _replace_or_die

from sslkit.cli import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
