"""No two modules call each other, directly or around a loop (docs/architecture.md,
"Folders and layers"): the symbols each object of libsmtprelay.a defines and
uses (nm) make a graph whose strongly connected components must be single
files.  A loop means one of them should move below the other."""
import collections
import glob
import os
import subprocess
import sys
import unittest

BUILD = os.environ.get("top_builddir", ".")


def symbols(obj):
    out = subprocess.run(["nm", obj], capture_output=True, text=True, check=True).stdout
    defined, used = set(), set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "U":
            used.add(parts[1])
        elif len(parts) == 3 and parts[1] in "TDBRC":
            defined.add(parts[2])
    return defined, used


def loops(graph):
    """Strongly connected components with more than one node (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
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
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def call_graph(objs):
    owner, uses = {}, {}
    for obj in objs:
        name = os.path.relpath(obj, BUILD).replace("libsmtprelay_a-", "").replace(".o", ".c")
        defined, used = symbols(obj)
        for s in defined:
            owner[s] = name
        uses[name] = used
    graph = collections.defaultdict(set)
    for name, used in uses.items():
        graph[name] |= {owner[s] for s in used if s in owner and owner[s] != name}
    return graph


class CallLoops(unittest.TestCase):
    def test_checker_finds_a_planted_loop(self):
        g = {"a.c": {"b.c"}, "b.c": {"c.c"}, "c.c": {"a.c"}, "d.c": {"a.c"}}
        self.assertEqual(loops(g), [["a.c", "b.c", "c.c"]])

    def test_no_loops(self):
        objs = glob.glob(os.path.join(BUILD, "*", "libsmtprelay_a-*.o"))
        self.assertGreater(len(objs), 50, "build libsmtprelay.a first (objects in %s)" % BUILD)
        self.assertEqual(loops(call_graph(objs)), [],
                         "files that call each other: move the shared part below both")


if __name__ == "__main__":
    unittest.main(verbosity=2)
