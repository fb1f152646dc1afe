#!/usr/bin/env python3
"""Checks that atomserve's import graph has no cycle, at two scales.

- Modules: every file under src/ is a node; `a` → `b` when `a` names `crate::b…` (in a `use` or
  a path) outside comments and outside its `#[cfg(test)]` module. A parent's `mod` lines are not
  edges: declaring a child is not depending on it.
- Components: the folders under src/ (`serve`, `observe`, `cache`, `http`, `sys`, `sync`) and
  each top-level file (`server`, `config`, `stats`, …). A cycle between two folders is a cycle
  even when no two files form one: `cache` reading `observe` while `observe` reads `cache`
  means neither can be understood, tested or moved without the other.

Exits 1 and prints each cycle found. `--self-test` proves it finds a planted cycle.
"""
import re
import sys
import tempfile
from pathlib import Path

PATH = re.compile(r"\bcrate((?:::[a-z_][a-z0-9_]*)+)")
SUPER = re.compile(r"\bsuper((?:::[a-z_][a-z0-9_]*)+)")


def module_of(src: Path, file: Path) -> tuple:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def code_lines(text: str):
    """The lines that are code: comments dropped, the `#[cfg(test)]` module left out."""
    out = []
    for line in text.splitlines():
        if line.strip().startswith("#[cfg(test)]"):
            break  # test modules sit at the end of a file here
        out.append(line.split("//", 1)[0])
    return "\n".join(out)


def graph(src: Path):
    files = sorted(src.rglob("*.rs"))
    modules = {module_of(src, f): f for f in files}
    edges = {m: set() for m in modules}

    def resolve(path: tuple):
        # The longest prefix of `path` that is a module file.
        for n in range(len(path), 0, -1):
            if path[:n] in modules:
                return path[:n]
        return None

    for m, f in modules.items():
        text = code_lines(f.read_text())
        # `use crate::a::{b, c::d}` names a::b and a::c::d: expand one level of braces.
        text = re.sub(r"crate::([a-z_:]+)::\{([^}]*)\}",
                      lambda g: " ".join(f"crate::{g.group(1)}::{x.strip()}" for x in g.group(2).split(",")),
                      text)
        for match in PATH.finditer(text):
            target = resolve(tuple(match.group(1).strip(":").split("::")))
            if target is not None and target != m and target[: len(m)] != m:
                edges[m].add(target)
        parent = m[:-1] if modules[m].name != "mod.rs" else m[:-1]
        for match in SUPER.finditer(text):
            target = resolve(parent + tuple(match.group(1).strip(":").split("::")))
            if target is not None and target != m and target[: len(m)] != m:
                edges[m].add(target)
    return edges


def component(m: tuple) -> str:
    return m[0] if m else "lib"


def cycles(edges: dict):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                out.append(sorted(scc))

    sys.setrecursionlimit(10000)
    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def check(src: Path) -> list:
    edges = graph(src)
    problems = []
    for scc in cycles(edges):
        names = ", ".join("::".join(m) or "lib" for m in scc)
        problems.append(f"module cycle: {names}")
    comp = {}
    for m, targets in edges.items():
        for t in targets:
            a, b = component(m), component(t)
            if a != b and a != "lib":
                comp.setdefault(a, set()).add(b)
    for scc in cycles(comp):
        why = []
        for a in scc:
            for m, targets in edges.items():
                for t in targets:
                    if component(m) == a and component(t) in scc and component(t) != a:
                        why.append(f"{'::'.join(m)} → {'::'.join(t)}")
        problems.append(f"component cycle: {', '.join(scc)} ({'; '.join(sorted(why))})")
    return problems


def self_test():
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        (src / "a").mkdir(parents=True)
        (src / "b").mkdir()
        (src / "lib.rs").write_text("pub mod a;\npub mod b;\n")
        (src / "a" / "mod.rs").write_text("pub mod x;\n")
        (src / "a" / "x.rs").write_text("use crate::b::y::Thing; // crate::a in a comment\n")
        (src / "b" / "mod.rs").write_text("pub mod y;\npub mod z;\n")
        (src / "b" / "y.rs").write_text("pub struct Thing;\n#[cfg(test)]\nmod tests { use crate::a::x; }\n")
        (src / "b" / "z.rs").write_text("pub fn f() {}\n")
        assert check(src) == [], check(src)
        (src / "b" / "z.rs").write_text("use crate::a::{x, self};\n")
        found = check(src)
        assert len(found) == 1 and found[0].startswith("component cycle: a, b"), found
        (src / "b" / "y.rs").write_text("use crate::a::x;\npub struct Thing;\n")
        found = check(src)
        assert any(p.startswith("module cycle: a::x, b::y") for p in found), found
    print("imports_check self-test: ok (a clean tree passes, a folder cycle and a module cycle are found)")


if __name__ == "__main__":
    if "--self-test" in sys.argv:
        self_test()
        sys.exit(0)
    root = Path(__file__).resolve().parent.parent / "src"
    problems = check(root)
    for p in problems:
        print(p)
    print(f"imports-check: {len(graph(root))} modules, {len(problems)} cycles")
    sys.exit(1 if problems else 0)
