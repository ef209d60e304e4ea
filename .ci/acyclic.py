#!/usr/bin/env python3
"""Fail when the crate's modules import each other in a circle.

Reads the graph `cargo modules dependencies` prints (modules only, "uses" edges: see README,
"Layout") on stdin; prints each cycle found and exits 1, else prints the counts and exits 0.
cargo-modules 0.27's own `--acyclic` checks the unfiltered graph, where every type and its
own methods form a loop, so the filtered graph is checked here.
"""
import re
import sys

EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)" \[label="uses"')

graph = {}
for line in sys.stdin:
    m = EDGE.match(line)
    if m and m.group(1) != m.group(2):
        graph.setdefault(m.group(1), set()).add(m.group(2))
        graph.setdefault(m.group(2), set())

# Tarjan's strongly connected components, iteratively (the graph has a few hundred nodes).
index, low, on_stack, stack, cycles = {}, {}, set(), [], []
for root in sorted(graph):
    if root in index:
        continue
    work = [(root, iter(sorted(graph[root])))]
    index[root] = low[root] = len(index)
    stack.append(root)
    on_stack.add(root)
    while work:
        node, children = work[-1]
        child = next(children, None)
        if child is None:
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
        elif child not in index:
            index[child] = low[child] = len(index)
            stack.append(child)
            on_stack.add(child)
            work.append((child, iter(sorted(graph[child]))))
        elif child in on_stack:
            low[node] = min(low[node], index[child])

edges = sum(len(v) for v in graph.values())
if not graph:
    sys.exit("no module graph on stdin (did cargo modules fail?)")
for component in cycles:
    print("import cycle between modules: " + " <-> ".join(component))
print(f"{len(graph)} modules, {edges} imports, {len(cycles)} cycles")
sys.exit(1 if cycles else 0)
