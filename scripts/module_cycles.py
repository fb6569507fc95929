#!/usr/bin/env python3
"""Fails when a crate's module graph has a cycle.

For every crate of the workspace, reads each `crate::a::b` path in its src/
(outside `#[cfg(test)]` code and the `*_tests.rs` files), maps it to the
module file that defines it (`config`, `config::error`, …) and looks for a
cycle. Prints the edges with `--edges`.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CRATES = ["crates/portero-wire", "crates/portero-core", "crates/portero-testkit",
          "shells/portero-wasm", "shells/portero-module", "redis-sidecar", "tests"]
SRC = None
PATH = re.compile(r"crate::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)")
GROUP = re.compile(r"crate::([a-z_][a-z0-9_:]*)::\{([^}]*)\}", re.S)


def module_of(file):
    rel = os.path.relpath(file, SRC)[: -len(".rs")].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    return "::".join(rel)


def modules():
    found = {}
    for root, _, files in os.walk(SRC):
        for name in files:
            if name.endswith(".rs") and not name.endswith("_tests.rs"):
                path = os.path.join(root, name)
                found[module_of(path)] = path
    return found


def resolve(segments, known):
    """The longest prefix of `segments` that is a module file."""
    for n in range(len(segments), 0, -1):
        candidate = "::".join(segments[:n])
        if candidate in known:
            return candidate
    return None


def edges(known):
    out = set()
    for module, path in known.items():
        text = open(path, encoding="utf-8").read()
        text = text.split("\n#[cfg(test)]")[0]
        paths = [m.group(1) for m in PATH.finditer(text)]
        for m in GROUP.finditer(text):
            for item in m.group(2).split(","):
                item = item.strip().split(" ")[0]
                if item and item != "self":
                    paths.append(m.group(1) + "::" + item)
        for p in paths:
            target = resolve(p.split("::"), known)
            if target and target != module:
                out.add((module, target))
        # A parent depends on the submodules it declares.
        for m in re.finditer(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?mod ([a-z_][a-z0-9_]*);", text, re.M):
            child = (module + "::" if module else "") + m.group(1)
            if child in known and module:
                out.add((module, child))
    return out


def find_cycle(graph):
    state = {}
    stack = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def main():
    global SRC
    status = 0
    for crate in CRATES:
        SRC = os.path.join(ROOT, crate, "src")
        known = modules()
        found = edges(known)
        if "--edges" in sys.argv:
            for a, b in sorted(found):
                print(f"{crate}: {a} -> {b}")
        graph = {}
        for a, b in found:
            graph.setdefault(a, set()).add(b)
        cycle = find_cycle(graph)
        if cycle:
            print(f"module cycle in {crate}: " + " -> ".join(cycle), file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
