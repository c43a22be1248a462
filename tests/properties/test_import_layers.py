"""The layer contracts of ``.importlinter`` hold (issue 20, item 7).

``lint-imports`` (import-linter, a dev dependency) reads every import statement under ``src/sslkit``,
those inside functions included, and fails when a module imports from a layer above its own; this
test runs it, so ``make test`` turns red on such an import. The layers are drawn in
``docs/architecture.md``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"
# In a subprocess: import-linter configures itself at import, and the graph is built from the package
# as it is on disk now. The exit status is lint_imports's: 0 when every contract is kept.
LINT = ("import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))")


def test_every_import_respects_the_layers():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", LINT, str(CONFIG)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert "No module named 'importlinter'" not in done.stderr, (
        "import-linter is missing: pip install -c constraints.txt -e '.[dev]'")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout, done.stdout
