"""The import-circle check (tests/tools/module_cycles.py) finds circles and ignores tests."""
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "module_cycles.py"

# A circle a -> b -> c -> a through a `use`, a module alias (`c::g()`) and a `use` group;
# the comment and the string naming crate::b do not count.
CIRCLE = {
    "lib.rs": "pub mod a;\npub mod b;\npub mod c;\n",
    "a.rs": "use crate::b::Thing;\n",
    "b.rs": "use crate::c;\npub struct Thing;\nfn f() { c::g(); }\n",
    "c/mod.rs": 'use crate::{a};\n// crate::b::Thing\nconst S: &str = "crate::b";\npub fn g() {}\n',
}
# Layered, with test code (inline and in a test-only file) reaching upward.
LAYERED = {
    "lib.rs": "pub mod low;\npub mod high;\n#[cfg(test)]\nmod test_util;\n",
    "low.rs": "pub fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::high;\n}\n",
    "high.rs": "use crate::low::f;\n",
    "test_util.rs": "use crate::high;\nuse crate::low;\n",
}


@pytest.mark.parametrize(
    "files, limit, code, says",
    [
        (CIRCLE, 2, 1, "circles: [3]"),
        (CIRCLE, 3, 0, "circles: [3]"),
        (LAYERED, 1, 0, "circles: none"),
    ],
)
def test_circles_are_measured_against_the_limit(tmp_path, files, limit, code, says):
    for name, text in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    out = subprocess.run(
        [sys.executable, str(TOOL), "--max", str(limit), str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == code, out.stdout + out.stderr
    assert says in out.stdout
