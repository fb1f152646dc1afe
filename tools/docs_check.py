#!/usr/bin/env python3
"""`make docs-check`: every code reference in docs/*.md and README.md resolves in the tree.

A reference is an inline code span naming a file of the repository — `src/cache/pack.rs`,
`sys/signal.rs` (paths under src/ may drop the `src/`), `tests/cold_path.rs:42` — optionally
followed, on the same line, by code spans naming what is in it: `src/cache/pack.rs` `pack`,
`loader.rs` `load_identity` (a bare file name is looked up anywhere under src/ when it is
unique). The checker verifies that
- the file exists (and has that many lines, for `file:line`);
- each name after it is defined there: a Rust `fn`, `struct`, `enum`, `trait`, `type`, `const`,
  `static`, `mod`, `macro_rules!`, an enum variant or a struct field (`Type::name` checks
  `name`); for other files (Python, shell, Markdown…) that the name occurs in the file.

Fenced code blocks are examples, not references, and are skipped. A span that is not a path is
ignored unless it follows one. Exit 1 with every broken reference listed (file:line: what).

    python3 tools/docs_check.py             # the repository's docs
    python3 tools/docs_check.py --self-test # a broken reference must fail, a good one pass
"""
import os
import pathlib
import re
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOP_DIRS = ("src", "tests", "benches", "loom-tests", "docs", "deploy", "frontend", "tools", "fuzz", ".ci")
SPAN = re.compile(r"`([^`\n]+)`")
PATH = re.compile(r"^(?P<path>(?:[\w.-]+/)*[\w.-]+\.(?:rs|md|py|sh|c|toml|mjs|ts|tsx|yaml|yml|service|socket|lua|json|txt))"
                  r"(?::(?P<line>\d+)(?:[-–]\d+)?)?$")
NAME = re.compile(r"^(?:[A-Za-z_][\w]*::)*(?P<name>[A-Za-z_][\w]*)(?:\(\))?$")
RUST_DEF = r"(?:fn|struct|enum|trait|type|const|static|mod|union)\s+{n}\b|macro_rules!\s*{n}\b|^\s*{n}\s*[,({{]|^\s*(?:pub(?:\(crate\))?\s+)?{n}\s*:"


def src_index():
    """File name → paths under src/ (for bare `loader.rs` references)."""
    index = {}
    for p in (ROOT / "src").rglob("*"):
        if p.is_file():
            index.setdefault(p.name, []).append(p)
    return index


def resolve(path, index):
    """The files a path can mean: itself, under src/, or — for a bare file name — every file of
    that name under src/ (`mod.rs`, `systemd.rs`: a name after it must be defined in one)."""
    if "/" not in path and index.get(path):
        return index[path]
    for c in [ROOT / path] + ([ROOT / "src" / path] if not path.startswith(TOP_DIRS) else []):
        if c.is_file():
            return [c]
    return []


def defines(file, name, cache={}):
    text = cache.get(file)
    if text is None:
        text = cache[file] = file.read_text(errors="replace")
    if file.suffix == ".rs":
        pattern = re.compile(RUST_DEF.format(n=re.escape(name)), re.M)
        return bool(pattern.search(text))
    return name in text


def check_file(md, index):
    problems = []
    in_fence = False
    for lineno, line in enumerate(md.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        spans = list(SPAN.finditer(line))
        current = None  # the file the last path span named
        last_end = 0
        for m in spans:
            text = m.group(1).strip()
            between = line[last_end:m.start()]
            last_end = m.end()
            p = PATH.match(text)
            if p and ("/" in p.group("path") or p.group("path").endswith((".rs", ".py", ".sh", ".md", ".c"))):
                path = p.group("path")
                targets = resolve(path, index)
                if not targets:
                    # Bare names that are not ours (`foo.rs` in prose about other projects) are
                    # not references; paths with a directory are.
                    if "/" in path or path in index:
                        problems.append(f"{md.relative_to(ROOT)}:{lineno}: no file {path}")
                    current = None
                    continue
                if p.group("line"):
                    n = max(len(t.read_text(errors="replace").splitlines()) for t in targets)
                    if int(p.group("line")) > n:
                        problems.append(f"{md.relative_to(ROOT)}:{lineno}: {path} has {n} lines, not {p.group('line')}")
                current = targets
                continue
            # A name right after a path (separated by spaces, commas, "and", ",": a list of names).
            if current is not None and re.fullmatch(r"[\s,/]*(?:and|or)?[\s,/]*", between):
                n = NAME.match(text)
                if n and not any(defines(t, n.group("name")) for t in current):
                    where = ", ".join(str(t.relative_to(ROOT)) for t in current)
                    problems.append(f"{md.relative_to(ROOT)}:{lineno}: {n.group('name')} is not defined in {where}")
                continue
            current = None
    return problems


def docs():
    return sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def main(files):
    index = src_index()
    problems = [p for f in files for p in check_file(f, index)]
    for p in problems:
        print(p)
    refs = sum(len(SPAN.findall(f.read_text())) for f in files)
    print(f"docs-check: {len(files)} files, {refs} code spans, {len(problems)} broken references")
    return 1 if problems else 0


def self_test():
    with tempfile.TemporaryDirectory(dir=ROOT / "docs") as d:
        good = pathlib.Path(d) / "good.md"
        good.write_text("See `src/cache/pack.rs` `pack` and `ZERO_COPY_MIN`, `sys/signal.rs` `install`, "
                        "`tests/cold_path.rs:3`; `Server::start` (`tests/common/mod.rs`).\n"
                        "```\n`src/nowhere.rs` inside a fence is an example\n```\n")
        bad_path = pathlib.Path(d) / "bad_path.md"
        bad_path.write_text("See `src/cache/nowhere.rs`.\n")
        bad_name = pathlib.Path(d) / "bad_name.md"
        bad_name.write_text("See `src/cache/pack.rs` `no_such_fn`.\n")
        bad_line = pathlib.Path(d) / "bad_line.md"
        bad_line.write_text("See `src/log.rs:99999`.\n")
        index = src_index()
        assert check_file(good, index) == [], check_file(good, index)
        for bad in (bad_path, bad_name, bad_line):
            assert check_file(bad, index), f"{bad.name} passed"
    print("docs-check: the checker fails on a broken path, name and line, and passes a good doc")
    return 0


if __name__ == "__main__":
    if "--self-test" in sys.argv:
        sys.exit(self_test())
    sys.exit(main(docs()))
