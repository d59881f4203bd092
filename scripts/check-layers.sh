#!/bin/sh
# SPDX-License-Identifier: MIT
# Fails when a source file includes a header from a higher layer, or from a sibling layer of
# the same rank (http/ and l4/ must not know each other), or when modules (a .c/.h pair)
# include each other in a circle, even within one layer. The layers are the folders of src/,
# ranked below; the CMake libraries enforce the same order at build time (a higher layer's
# headers are not on a lower library's include path), this script says it in plain words and
# also catches includes by relative path. Usage: scripts/check-layers.sh [SRC_DIR]
set -eu
src=${1:-"$(dirname "$0")/../src"}
exec python3 - "$src" <<'EOF'
import os, re, sys

# Rank of each folder: a file may include headers of its own folder and of lower ranks only.
RANKS = {"lib": 0, "proto": 1, "config": 2, "model": 3, "worker": 4,
         "http": 5, "l4": 5, "control": 6, "process": 7}
src = sys.argv[1]
owner = {}  # header name -> folder
for folder in RANKS:
    d = os.path.join(src, folder)
    if not os.path.isdir(d):
        sys.exit("check-layers: missing folder src/%s" % folder)
    for name in os.listdir(d):
        if name.endswith(".h"):
            if name in owner:
                sys.exit("check-layers: %s is in both src/%s and src/%s"
                         % (name, owner[name], folder))
            owner[name] = folder
stray = [n for n in os.listdir(src) if n.endswith((".c", ".h"))]
if stray:
    sys.exit("check-layers: files outside a layer folder: %s" % ", ".join(sorted(stray)))
problems, edges, deps = [], set(), {}
for folder, rank in RANKS.items():
    d = os.path.join(src, folder)
    for name in sorted(os.listdir(d)):
        if not name.endswith((".c", ".h")):
            continue
        path = os.path.join(d, name)
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                m = re.match(r'\s*#\s*include\s*"([^"]+)"', line)
                if not m:
                    continue
                inc = os.path.basename(m.group(1))
                if inc[:-2] != name[:-2]:
                    deps.setdefault(name[:-2], set()).add(inc[:-2])
                to = owner.get(inc)
                if to is None:
                    problems.append("src/%s/%s:%d: includes %s, which no layer owns"
                                    % (folder, name, lineno, m.group(1)))
                    continue
                if to != folder:
                    edges.add((folder, to))
                if RANKS[to] > rank or (RANKS[to] == rank and to != folder):
                    problems.append("src/%s/%s:%d: includes %s from src/%s, a %s layer"
                                    % (folder, name, lineno, inc, to,
                                       "higher" if RANKS[to] > rank else "sibling"))
for a, b in sorted(edges):
    if (b, a) in edges and a < b:
        problems.append("src/%s and src/%s include each other" % (a, b))
# Module circles (Tarjan's strongly connected components over module includes).
index, low, stack, on, counter = {}, {}, [], set(), [0]
def visit(v):
    index[v] = low[v] = counter[0]
    counter[0] += 1
    stack.append(v)
    on.add(v)
    for w in sorted(deps.get(v, ())):
        if w not in index:
            visit(w)
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
        if len(comp) > 1:
            problems.append("modules include each other in a circle: %s" % " -> ".join(sorted(comp)))
sys.setrecursionlimit(10000)
for v in sorted(deps):
    if v not in index:
        visit(v)
for p in problems:
    print(p)
if problems:
    sys.exit(1)
print("check-layers: %d folders, %d modules: layering holds, no include circles"
      % (len(RANKS), len(deps)))
EOF
