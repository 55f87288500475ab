#!/usr/bin/env python3
"""Checks that jobgate's modules depend on each other one way only.

Reads every `src/**/*.rs` of the library crate (`src/main.rs` is the binary, a separate
crate), collects the paths each file names (`use crate::…`, `use super::…`, inline
`crate::a::b::c`, and paths that start with a name a `use` brought in), resolves each to the
module file that defines it, and builds two kinds of graph:

- file level: one node per module file (`auth::keys::store`);
- folder level: for `src/` and for every folder under it, one node per direct child, file
  or sub-folder (`auth`, `policy`, `clock` in `src/`; `keys`, `verify`, `claims` in
  `auth/`): A -> B when any file under A uses any file under B.

It prints every cycle it finds in any graph and exits 1; with none it prints a one-line
summary and exits 0. `--graph` also prints the folder-level edges.

What counts as an edge, and what does not:
- A `mod x;` declaration is structure, not a dependency.
- A `pub use` in a `mod.rs` of its own descendants is a facade: it is followed when a path
  is resolved (so `crate::config::Config` counts as a use of the file that defines `Config`),
  but is not itself an edge, since a parent re-exporting a child is not the parent using it.
- `#[cfg(test)]` code counts like any other: a test that needs a higher module is still an
  arrow pointing up.

Python 3 standard library only, so that CI runs it without installing anything.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
ITEM_RE = re.compile(
    r"\bpub(?:\s*\([^)]*\))?\s+(?:unsafe\s+|async\s+|const\s+)*"
    r"(?:fn|struct|enum|const|static|type|trait|mod|union|macro_rules!)\s+(" + IDENT + ")"
)
USE_RE = re.compile(r"\b(pub(?:\s*\([^)]*\))?\s+)?use\s+([^;]*);")
PATH_RE = re.compile(r"(?<![A-Za-z0-9_:])((?:" + IDENT + r")(?:\s*::\s*" + IDENT + r")+)")
MOD_DECL_RE = re.compile(r"\bmod\s+(" + IDENT + r")\s*;")
INLINE_MOD_RE = re.compile(r"\bmod\s+(" + IDENT + r")\s*\{")


def strip_comments_and_strings(text: str) -> str:
    """Blanks comments, string and char literals (keeping newlines), so that paths in docs
    or messages are not read as references."""
    out = []
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif text.startswith("/*", i):
            depth = 0
            j = i
            while j < n:
                if text.startswith("/*", j):
                    depth += 1
                    j += 2
                elif text.startswith("*/", j):
                    depth -= 1
                    j += 2
                    if depth == 0:
                        break
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:]) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            m = re.match(r'r(#*)"', text[i:])
            hashes = m.group(1)
            end = text.find('"' + hashes, i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:end]))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            j = min(j + 1, n)
            out.append(re.sub(r"[^\n]", " ", text[i:j]))
            i = j
        elif c == "'":
            # A char literal ('a', '\n', '\u{1F600}') or a lifetime ('a): only the former
            # is blanked.
            m = re.match(r"'(?:\\(?:u\{[0-9a-fA-F]+\}|x[0-9a-fA-F]{2}|.)|[^\\'])'", text[i:])
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


def expand_use_tree(tree: str, prefix: list[str]) -> list[tuple[list[str], str | None]]:
    """Expands `a::{b, c::{d, self}}` into full paths; a glob's path comes with "*"."""
    tree = re.sub(r"\s+", "", tree)
    results: list[tuple[list[str], str | None]] = []

    def split_top(s: str) -> list[str]:
        parts, depth, start = [], 0, 0
        for k, ch in enumerate(s):
            if ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            elif ch == "," and depth == 0:
                parts.append(s[start:k])
                start = k + 1
        parts.append(s[start:])
        return [p for p in parts if p]

    def walk(s: str, pre: list[str]) -> None:
        brace = s.find("{")
        if brace >= 0:
            head = s[:brace].rstrip(":")
            inner = s[brace + 1 : s.rfind("}")]
            base = pre + ([seg for seg in head.split("::") if seg] if head else [])
            for part in split_top(inner):
                walk(part, base)
            return
        segs = [seg for seg in s.split("::") if seg]
        if segs and segs[-1] == "*":
            results.append((pre + segs[:-1], "*"))
            return
        results.append((pre + segs, None))

    walk(tree, prefix)
    return results


def use_tree_with_aliases(raw: str) -> list[tuple[list[str], str | None]]:
    """Like expand_use_tree, but honours `as` renames (read before whitespace is removed)."""
    renamed = {}
    for m in re.finditer(r"(" + IDENT + r")\s+as\s+(" + IDENT + ")", raw):
        renamed[m.group(1)] = m.group(2)
    cleaned = re.sub(r"\s+as\s+" + IDENT, "", raw)
    out = []
    for segs, glob in expand_use_tree(cleaned, []):
        if not segs:
            continue
        if glob == "*":
            out.append((segs, None))
            continue
        local = segs[-1]
        if local == "self" and len(segs) > 1:
            segs = segs[:-1]
            local = segs[-1]
        out.append((segs, renamed.get(local, local)))
    # Globs come back from expand_use_tree with the '*' removed and alias None.
    return out


class Crate:
    def __init__(self, src: Path):
        self.src = src
        # module path (tuple) -> file
        self.files: dict[tuple[str, ...], Path] = {}
        for path in sorted(src.rglob("*.rs")):
            rel = path.relative_to(src)
            if rel == Path("main.rs") or rel.parts[0] == "bin":
                continue
            parts = list(rel.with_suffix("").parts)
            if parts == ["lib"]:
                module: tuple[str, ...] = ()
            elif parts[-1] == "mod":
                module = tuple(parts[:-1])
            else:
                module = tuple(parts)
            self.files[module] = path
        self.text = {m: strip_comments_and_strings(p.read_text()) for m, p in self.files.items()}
        # Items each file module defines itself (pub or not: `pub(crate)` and private
        # items reached through `super::` count as well).
        self.items: dict[tuple[str, ...], set[str]] = {}
        self.reexports: dict[tuple[str, ...], dict[str, list[str]]] = {}
        self.globs: dict[tuple[str, ...], list[list[str]]] = {}
        for module, text in self.text.items():
            items = set(ITEM_RE.findall(text))
            items |= set(
                re.findall(
                    r"\b(?:fn|struct|enum|const|static|type|trait|union)\s+(" + IDENT + ")", text
                )
            )
            self.items[module] = items
            self.reexports[module] = {}
            self.globs[module] = []
            for m in USE_RE.finditer(text):
                if not m.group(1):
                    continue
                for segs, local in use_tree_with_aliases(m.group(2)):
                    full = self.absolute(module, segs)
                    if full is None:
                        continue
                    if local is None:
                        self.globs[module].append(full)
                    else:
                        self.reexports[module][local] = full

    def absolute(self, module: tuple[str, ...], segs: list[str]) -> list[str] | None:
        """A path as written in `module` → a path from the crate root, or None when it
        does not start in this crate."""
        segs = [s for s in segs if s != "*"]
        if not segs:
            return None
        if segs[0] == "crate":
            return segs[1:]
        if segs[0] in ("super", "self"):
            base = list(module)
            while segs and segs[0] in ("super", "self"):
                if segs[0] == "super":
                    if not base:
                        return None
                    base.pop()
                segs = segs[1:]
            return base + segs
        # `use x::…` with x a child module of the current one (2018 edition paths).
        if tuple(module) + (segs[0],) in self.files or self.declares_inline(module, segs[0]):
            return list(module) + segs
        return None

    def declares_inline(self, module: tuple[str, ...], name: str) -> bool:
        return re.search(r"\bmod\s+" + name + r"\s*\{", self.text.get(module, "")) is not None

    def resolve(self, path: list[str]) -> tuple[str, ...] | None:
        """The file module that defines what `path` (from the crate root) names."""
        found = self._resolve(path, 0)
        return found[0] if found else None

    def _resolve(self, path: list[str], depth: int) -> tuple[tuple[str, ...], bool] | None:
        """(module, True) when the module defines the name; (module, False) when the
        path only reaches a module file and the name was not found in it."""
        if depth > 20:
            return None
        k = len(path)
        while k >= 0 and tuple(path[:k]) not in self.files:
            k -= 1
        if k < 0:
            return None
        module = tuple(path[:k])
        rest = path[k:]
        if not rest:
            return module, True
        name = rest[0]
        # An inline module (`mod tests { … }`) or an item defined here.
        if name in self.items[module] or self.declares_inline(module, name):
            return module, True
        if name in self.reexports[module]:
            found = self._resolve(self.reexports[module][name] + rest[1:], depth + 1)
            if found is not None:
                return found
        for glob in self.globs[module]:
            found = self._resolve(glob + rest, depth + 1)
            if found is not None and found[1]:
                return found
        return module, False


def inline_scopes(text: str) -> list[tuple[int, int, str]]:
    """(start, end, name) of every inline `mod name { … }` block."""
    scopes = []
    for m in INLINE_MOD_RE.finditer(text):
        depth = 0
        for k in range(m.end() - 1, len(text)):
            if text[k] == "{":
                depth += 1
            elif text[k] == "}":
                depth -= 1
                if depth == 0:
                    scopes.append((m.start(), k, m.group(1)))
                    break
    return scopes


def scope_at(module: tuple[str, ...], scopes, position: int) -> tuple[str, ...]:
    names = [name for start, end, name in sorted(scopes) if start <= position <= end]
    return tuple(module) + tuple(names)


def file_edges(crate: Crate) -> dict[tuple[str, ...], set[tuple[str, ...]]]:
    edges: dict[tuple[str, ...], set[tuple[str, ...]]] = {m: set() for m in crate.files}
    for module, text in crate.text.items():
        locals_: dict[str, list[str]] = {}
        use_spans = []
        scopes = inline_scopes(text)
        for m in USE_RE.finditer(text):
            use_spans.append((m.start(), m.end()))
            is_pub = bool(m.group(1))
            here = scope_at(module, scopes, m.start())
            for segs, local in use_tree_with_aliases(m.group(2)):
                full = crate.absolute(here, segs)
                if full is None:
                    continue
                target = crate.resolve(full)
                if target is None:
                    continue
                facade = is_pub and target[: len(module)] == module and target != module
                if not facade and target != module:
                    edges[module].add(target)
                if local is not None:
                    locals_[local] = full
        # Paths outside `use` lines: `crate::x::y`, `super::x`, `name::x` for a used name.
        for m in PATH_RE.finditer(text):
            if any(a <= m.start() < b for a, b in use_spans):
                continue
            segs = re.sub(r"\s+", "", m.group(1)).split("::")
            if segs[0] in ("crate", "super", "self"):
                full = crate.absolute(scope_at(module, scopes, m.start()), segs)
            elif segs[0] in locals_:
                full = locals_[segs[0]] + segs[1:]
            else:
                # `child::item` for a child module of the current one, else not ours.
                full = crate.absolute(scope_at(module, scopes, m.start()), segs)
            if full is None:
                continue
            target = crate.resolve(full)
            if target is not None and target != module:
                edges[module].add(target)
    return edges


def folder_level(crate: Crate, edges) -> dict[str, dict[str, set[str]]]:
    """For every folder (the crate root included), a graph of its direct children (files
    and sub-folders): A -> B when some file under A uses some file under B. The folder's own
    `mod.rs` is not a child: children reaching up to their facade are not an arrow between
    siblings."""
    folders = {m for m, path in crate.files.items() if path.name in ("mod.rs", "lib.rs")}
    graphs: dict[str, dict[str, set[str]]] = {}
    for folder in sorted(folders):
        depth = len(folder)
        children = {
            m[depth] for m in crate.files if len(m) > depth and m[:depth] == folder
        }
        graph: dict[str, set[str]] = {child: set() for child in children}
        for source, targets in edges.items():
            if len(source) <= depth or source[:depth] != folder:
                continue
            for target in targets:
                if len(target) <= depth or target[:depth] != folder:
                    continue
                if source[depth] != target[depth]:
                    graph[source[depth]].add(target[depth])
        graphs["::".join(folder) or "src"] = graph
    return graphs


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each given as one
    concrete cycle through its nodes."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    sys.setrecursionlimit(10_000)

    def connect(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    found = []
    for component in components:
        members = set(component)
        start = component[0]
        # Shortest way back to start inside the component (BFS).
        previous = {start: None}
        queue = [start]
        cycle = None
        while queue and cycle is None:
            nxt = []
            for v in queue:
                for w in sorted(graph.get(v, ())):
                    if w == start:
                        path = [v]
                        while previous[path[-1]] is not None:
                            path.append(previous[path[-1]])
                        cycle = list(reversed(path)) + [start]
                        break
                    if w in members and w not in previous:
                        previous[w] = v
                        nxt.append(w)
                if cycle:
                    break
            queue = nxt
        found.append((component, cycle or component))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default=os.path.join(os.path.dirname(__file__), "..", "src"))
    parser.add_argument("--graph", action="store_true", help="print the folder-level edges")
    args = parser.parse_args()

    crate = Crate(Path(args.src).resolve())
    edges = file_edges(crate)
    name = lambda m: "::".join(m) if m else "(lib)"  # noqa: E731

    file_graph = {name(m): {name(t) for t in ts} for m, ts in edges.items()}
    folder_graphs = folder_level(crate, edges)

    if args.graph:
        for folder, graph in folder_graphs.items():
            print(f"in {folder}:")
            for child in sorted(graph):
                print(f"  {child} -> {', '.join(sorted(graph[child])) or '(nothing)'}")

    failed = False
    levels = [("file", file_graph)] + [
        (f"folder ({folder})", graph) for folder, graph in folder_graphs.items()
    ]
    for level, graph in levels:
        for component, cycle in cycles(graph):
            failed = True
            print(f"module_deps: {level}-level cycle: {' -> '.join(cycle)}")
            if len(component) > len(cycle) - 1:
                print(f"  (the whole circle: {', '.join(component)})")
    n_edges = sum(len(t) for t in file_graph.values())
    if failed:
        print("module_deps: dependencies must point one way (see each folder's mod.rs)")
        return 1
    print(
        f"module_deps: {len(file_graph)} files, {n_edges} file edges, "
        f"{len(folder_graphs)} folders: no cycles"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
