#!/usr/bin/env python3
"""Checks the module layering of a Rust crate's src/ (see docs/ARCHITECTURE.md, "Layers").

    scripts/check-layers.py [SRC_DIR]      (default: src)

Every `crate::<module>` a file names (in `use` lines, grouped imports and paths) is an edge from
the file's top-level module to that module. The check fails, naming each offending file, when

  - a transport (http, ws, sse, push) names another transport;
  - any module other than the composition root (router, openapi, lib.rs, main.rs) names a
    transport: the operations core, the NATS adapter and the leaves never depend on how they
    are called;
  - the top-level modules form an import cycle.

Exit status 0 when the layering holds, 1 with one line per violation otherwise.
"""

import re
import sys
from pathlib import Path

TRANSPORTS = {"http", "ws", "sse", "push"}
ROOTS = {"router", "openapi"}

# `crate::a`, `crate::{a, b::c}`; comments and strings are stripped first.
PATH = re.compile(r"\bcrate::(\{[^}]*\}|[a-z_][a-z0-9_]*)")
NAME = re.compile(r"(?:^|[{,]\s*)([a-z_][a-z0-9_]*)")


def module_of(src: Path, file: Path):
    rel = file.relative_to(src)
    if len(rel.parts) == 1:
        stem = rel.stem
        return None if stem in ("lib", "main") else stem
    return rel.parts[0]


TOKENS = re.compile(
    r'r(#*)".*?"\1'  # raw strings
    r'|"(?:\\.|[^"\\])*"'  # strings (escaped newlines included)
    r"|'(?:\\.|[^'\\])'"  # character literals
    r"|//[^\n]*"  # line comments
    r"|/\*.*?\*/",  # block comments
    re.S,
)


def strip(text: str) -> str:
    """The code without comments, and with every literal emptied."""
    return TOKENS.sub(lambda m: "" if m.group(0).startswith("/") else '""', text)


def edges(src: Path):
    """(from, to) -> the files that make the edge."""
    found = {}
    for file in sorted(src.rglob("*.rs")):
        origin = module_of(src, file)
        if origin is None:
            continue
        for match in PATH.finditer(strip(file.read_text())):
            target = match.group(1)
            names = NAME.findall(target.strip("{}")) if target.startswith("{") else [target]
            for name in names:
                if name not in ("self", "super") and name != origin:
                    found.setdefault((origin, name), set()).add(str(file))
    return found


def cycles(graph):
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def main() -> int:
    src = Path(sys.argv[1] if len(sys.argv) > 1 else "src")
    if not src.is_dir():
        print(f"check-layers: {src} is not a directory", file=sys.stderr)
        return 2
    found = edges(src)
    problems = []
    for (origin, target), files in sorted(found.items()):
        where = ", ".join(sorted(files))
        if origin in TRANSPORTS and target in TRANSPORTS:
            problems.append(f"transport {origin} imports transport {target} ({where})")
        elif target in TRANSPORTS and origin not in ROOTS and origin not in TRANSPORTS:
            problems.append(f"{origin} imports transport {target} ({where})")
    graph = {}
    for origin, target in found:
        graph.setdefault(origin, set()).add(target)
    for component in cycles(graph):
        members = set(component)
        links = sorted(
            f"{o} -> {t}" for (o, t) in found if o in members and t in members
        )
        problems.append(f"import cycle between {', '.join(component)}: {'; '.join(links)}")
    for problem in problems:
        print(f"check-layers: {problem}")
    if not problems:
        print(f"check-layers: {len({o for o, _ in found})} modules, {len(found)} imports, layering holds")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
