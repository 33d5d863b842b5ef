"""The import-circle check (tests/tools/module_cycles.py) finds circles and ignores tests."""
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "module_cycles.py"


def crate(tmp_path, files):
    for name, text in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def run(crate_dir, *args):
    return subprocess.run(
        [sys.executable, str(TOOL), *args, str(crate_dir)],
        capture_output=True, text=True, timeout=60,
    )


def test_a_circle_through_use_and_module_aliases_is_found(tmp_path):
    c = crate(tmp_path, {
        "lib.rs": "pub mod a;\npub mod b;\npub mod c;\n",
        "a.rs": "use crate::b::Thing;\n",
        "b.rs": "use crate::c;\npub struct Thing;\nfn f() { c::g(); }\n",
        # Names a through a `use crate::{...}` group; the string and comment do not count.
        "c/mod.rs": 'use crate::{a};\n// crate::b::Thing\nconst S: &str = "crate::b";\npub fn g() {}\n',
    })
    out = run(c, "--max", "2")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "circles: [3]" in out.stdout
    assert run(c, "--max", "3").returncode == 0


def test_test_modules_and_layered_crates_pass(tmp_path):
    c = crate(tmp_path, {
        "lib.rs": "pub mod low;\npub mod high;\n#[cfg(test)]\nmod test_util;\n",
        "low.rs": "pub fn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::high;\n}\n",
        "high.rs": "use crate::low::f;\n",
        "test_util.rs": "use crate::high;\nuse crate::low;\n",
    })
    out = run(c, "--max", "1")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "circles: none" in out.stdout
