#!/usr/bin/env python3
"""Import circles between the modules of each Rust crate in the workspace.

    python3 tests/tools/module_cycles.py [--max N] [--verbose] [CRATE_DIR ...]

A module (one file: `a.rs` or `a/mod.rs`) depends on another when it names it: `use
crate::x::y`, a `crate::x::y::Z` path in code, or `super::`/`self::` paths. Test-only code
(`#[cfg(test)]` modules, inline or in their own files) is left out: tests may reach
anywhere. The strongly connected components of that graph with more than one module are
the circles; the script prints each and fails when one has more than `--max` modules
(default 5: "a handful", see docs/architecture.md).

The parse is lexical (no macro expansion, no name resolution through re-exports), which
is what a reader sees: a `use` of a re-export counts as depending on the module it names.
"""

import argparse
import os
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CRATES = [
    "controller/metadata",
    "controller/client",
    "controller",
    "broker/log",
    "broker",
    "client",
    "chaos",
    ".",
]


def strip_comments_and_strings(text):
    """Blank out comments, string and char literals (keeping newlines and length)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j + 1]))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}'), not a lifetime ('a).
            m = re.match(r"'(\\.[^']*|[^'\\])'", text[i:i + 12])
            if m:
                out.append(" " * len(m.group(0)))
                i += len(m.group(0))
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def remove_test_modules(code):
    """Drops `#[cfg(test)] mod x { ... }` blocks; returns (code, names of `#[cfg(test)] mod x;`)."""
    test_files = set(re.findall(r"#\[cfg\((?:any\()?test[^\]]*\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+(\w+)\s*;", code))
    while True:
        m = re.search(r"#\[cfg\(test\)\]\s*(?:pub(?:\([a-z]+\))?\s+)?mod\s+\w+\s*\{", code)
        if not m:
            return code, test_files
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        code = code[:m.start()] + re.sub(r"[^\n]", " ", code[m.start():j]) + code[j:]


def module_files(src):
    """Maps module path tuples to files, following `mod x;` declarations from lib/main."""
    modules = {}

    def visit(path, file, is_dir_owner):
        code, test_files = remove_test_modules(strip_comments_and_strings(file.read_text()))
        modules[path] = (file, code)
        base = file.parent if is_dir_owner else file.parent / file.stem
        for m in re.finditer(r"(?m)^\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([a-z]+\))?\s+)?mod\s+(\w+)\s*;", code):
            name = m.group(1)
            if name in test_files:
                continue
            attr = re.search(r'#\[path\s*=\s*"([^"]+)"\]', file.read_text()[max(0, m.start() - 200):m.end()])
            if attr:
                child = (file.parent / attr.group(1))
                visit(path + (name,), child, False)
                continue
            for cand, owner in ((base / f"{name}.rs", False), (base / name / "mod.rs", True)):
                if cand.exists():
                    visit(path + (name,), cand, owner)
                    break

    roots = [p for p in (src / "lib.rs", src / "main.rs") if p.exists()]
    for root in roots:
        visit((root.stem,) if len(roots) > 1 else (), root, True)
    return modules


def expand_use_tree(tree):
    """`a::{b, c::{d, e}}` -> [a::b, a::c::d, a::c::e]."""
    tree = re.sub(r"\s+", "", tree)
    depth, parts, cur = 0, [], ""
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    if cur:
        parts.append(cur)
    out = []
    for p in parts:
        for e in expand_use_tree(p):
            out.append(prefix + e)
    return out


def referenced_paths(code):
    """Module-ish paths named in `use` items and in `crate::`/`super::` paths in code."""
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", code):
        for p in expand_use_tree(m.group(1)):
            paths.append(re.sub(r"\s+as\s+\w+$", "", p.split(" as ")[0]))
    for m in re.finditer(r"\b((?:crate|super|self)(?:::(?:super|\w+))+)", code):
        paths.append(m.group(1))
    return paths


def resolve(path_str, current, modules, crate_root):
    segs = [s for s in path_str.split("::") if s]
    if not segs:
        return None
    if segs[0] == "crate":
        base, segs = crate_root, segs[1:]
    elif segs[0] in ("super", "self"):
        base = current
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                base = base[:-1]
            segs = segs[1:]
    else:
        return None
    best = None
    for k in range(len(segs) + 1):
        cand = base + tuple(segs[:k])
        if cand in modules:
            best = cand
    return best


def tarjan(graph):
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    sys.setrecursionlimit(10000)

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    for v in list(graph):
        if v not in index:
            strong(v)
    return out


def crate_cycles(crate_dir):
    src = crate_dir / "src"
    modules = module_files(src)
    graph = {}
    for path, (_file, code) in modules.items():
        crate_root = path[:1] if path and path[0] in ("lib", "main") else ()
        deps = set()
        paths = referenced_paths(code)
        # `use crate::handlers;` (or `as h`) brings a module into scope: `handlers::produce::x`
        # in code then names `handlers::produce`.
        for m in re.finditer(r"\buse\s+([^;]+);", code):
            for p in expand_use_tree(m.group(1)):
                alias = p.split(" as ")[-1].split("::")[-1].strip() if " as " in p else p.split("::")[-1]
                target = resolve(p.split(" as ")[0], path, modules, crate_root)
                if target is None or alias in ("self", "*") or target[-1:] != tuple(p.split(" as ")[0].split("::")[-1:]):
                    continue
                for q in re.finditer(r"(?<![:\w])" + re.escape(alias) + r"((?:::\w+)+)", code):
                    paths.append(p.split(" as ")[0] + q.group(1))
        for p in paths:
            target = resolve(p, path, modules, crate_root)
            # A module naming its own parent or children is structure, not a circle.
            if target is None or target == path or target == () or target == crate_root:
                continue
            deps.add(target)
        graph[path] = deps
    comps = [sorted(c) for c in tarjan(graph) if len(c) > 1]
    return modules, sorted(comps, key=len, reverse=True)


def name(path):
    return "::".join(path) or "crate"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max", type=int, default=5, help="largest circle allowed (modules)")
    ap.add_argument("--verbose", action="store_true", help="list the modules of every circle")
    ap.add_argument("crates", nargs="*", help="crate directories (default: every workspace crate)")
    args = ap.parse_args()
    crates = args.crates or DEFAULT_CRATES
    worst = 0
    for c in crates:
        crate_dir = (ROOT / c).resolve()
        modules, comps = crate_cycles(crate_dir)
        label = os.path.relpath(crate_dir, ROOT)
        sizes = [len(x) for x in comps]
        print(f"{label}: {len(modules)} modules, circles: {sizes or 'none'}")
        for comp in comps:
            if args.verbose or len(comp) > args.max:
                print("   ", ", ".join(name(p) for p in comp))
        worst = max([worst] + sizes)
    if worst > args.max:
        print(f"error: an import circle of {worst} modules (more than {args.max})", file=sys.stderr)
        return 1
    print(f"ok: no import circle larger than {args.max} modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
