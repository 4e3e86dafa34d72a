"""Wiring: the expansion's lazy references -> (node, port) sources and graph edges; cycle check; order.

The result is a networkx.MultiDiGraph whose nodes carry their NodeDraft under `"draft"`, in a topological
order (the spec's own order wherever the references allow it), ready for `builder.graph.infer`.
"""
from __future__ import annotations

from dataclasses import replace

import networkx as nx

from builder import ops as ops_pkg
from builder.core.errors import did_you_mean
from builder.graph.scopes import ExportRef, NodeRef
from builder.core.types import DRAFT_KEY


class RefError(Exception):
    def __init__(self, message, loc, file, hint=None, undeclared=False):
        super().__init__(message)
        self.loc, self.file, self.hint = loc, file, hint
        self.undeclared = undeclared  # names something never written in its scope (not a follow-on error)
        self.skipped = None  # the `when: false` node whose `in:` failed (reported on that node, once)
        self.cycle = None  # the skipped nodes that pass each other's output on, for a cycle among them


def resolve(target, drafts: dict, depth=0, passing=()):
    """A lazy reference -> (node, port); raises RefError. passing: the skipped nodes walked through."""
    if depth > 10_000:
        raise RefError("reference chain too long (a node refers to itself through block inputs?)", None, None)
    if isinstance(target, NodeRef):
        return target.node, target.port
    if isinstance(target, ExportRef):
        exp = target.export
        if target.port is None:
            i = target.index or 0
            if i >= len(exp.outputs):
                raise RefError(f"block '{exp.path}' has no output number {i + 1}", target.loc, target.file)
            return resolve(exp.outputs[i][1], drafts, depth + 1, passing)
        for port, t in exp.outputs:
            if port == target.port:
                return resolve(t, drafts, depth + 1, passing)
        copy = copy_export(exp, target.port)
        if copy is not None:
            k, rest = copy
            if k >= len(exp.copies):
                raise RefError(f"block '{exp.path}' has {len(exp.copies)} copies (0 to {len(exp.copies) - 1}), "
                               f"not a copy {k}", target.loc, target.file)
            return resolve(ExportRef(exp.copies[k], rest, target.loc, target.file), drafts, depth + 1, passing)
        raise RefError(f"block '{exp.path}' has no output '{target.port}'", target.loc, target.file,
                       hint=did_you_mean(target.port, [p for p, _ in exp.outputs]))
    if target is None:
        raise RefError("missing input", None, None)
    scope, name, port = target.scope, target.name, target.port
    entry = scope.table.get(name)
    if entry is None:
        raise RefError(f"unknown node '{name}'" + (f" (in {scope.prefix[:-1]})" if scope.prefix else ""),
                       target.loc, target.file, hint=did_you_mean(name, scope.declared | set(scope.table)),
                       undeclared=name not in scope.declared)
    kind = entry[0]
    if kind == "input":
        if port is not None:
            raise RefError(f"'{name}' is an input and has no port '{port}'", target.loc, target.file)
        return resolve(entry[1], drafts, depth + 1, passing)
    if kind == "skip":
        if entry[3] in passing:
            loop = passing[passing.index(entry[3]):] + (entry[3],)
            e = RefError(f"cycle through skipped nodes: {' -> '.join(loop)} (`when: false` passes its first "
                         f"input on)", target.loc, target.file)
            e.cycle = frozenset(loop)
            raise e
        try:
            return resolve(entry[1], drafts, depth + 1, passing + (entry[3],))
        except RefError as e:
            e.skipped = e.skipped or entry[3]
            raise
    if kind == "block":
        return resolve(ExportRef(entry[1], port, target.loc, target.file), drafts, depth + 1, passing)
    path = entry[1]
    rec = drafts.get(path)
    op = ops_pkg.get(rec.op) if rec else None
    try:
        ports = tuple(op.port_names(rec.args)) if op else ("out",)
    except Exception:  # arguments the op's port rule cannot read: its shape rule will say why
        ports = ()
    if not all(isinstance(p, str) for p in ports):
        ports = ()  # port names from odd arguments (split names: [1, [2]]): the shape rule rejects them
    if port is None or not ports:
        return path, ports[0] if ports else (port or "out")
    if port not in ports:
        raise RefError(f"'{name}' ({rec.op if rec else '?'}) has no output port '{port}'", target.loc,
                       target.file, hint=did_you_mean(port, ports) or f"its ports are: {', '.join(ports)}")
    return path, port


def copy_export(exp, port: str):
    """`0.sk` or `0` on a repeated block -> (copy index, that copy's port or None for its first output)."""
    head, _, rest = port.partition(".")
    if exp.copies is None or not head.isdigit():
        return None
    return int(head), rest or None


def check_skipped(skipped: dict, drafts: dict, err, only_undeclared=False) -> bool:
    """A `when: false` node is not built, but its `in:` must still name real nodes: reported on that node
    (not on the node that reads it). False when one could not be resolved."""
    ok, said = True, set()
    for path, (targets, loc, file) in skipped.items():
        for t in targets:
            try:
                resolve(t, drafts)
            except RefError as e:
                key = e.cycle or (path, str(e), e.loc)
                if e.skipped not in (None, path) or key in said:
                    continue  # through another skipped node: reported on that node's own `in:`
                ok = False
                said.add(key)
                if e.undeclared or not only_undeclared:
                    err(str(e), e.loc or loc, node=path, hint=e.hint, file=e.file or file)
            except Exception:
                pass
    return ok


def report_dangling(drafts: dict, targets: dict, out_targets, err, skipped=None):
    """After errors in expansion, still report references to names never written (more errors per run);
    references into nodes that failed are follow-on errors and stay quiet."""
    pending = [(t, drafts[path]) for path, ts in targets.items() for t in ts]
    pending += [(t, None) for _, t in out_targets]
    check_skipped(skipped or {}, drafts, err, only_undeclared=True)
    for t, rec in pending:
        try:
            resolve(t, drafts)
        except RefError as e:
            if e.undeclared and e.skipped is None:
                err(str(e), e.loc or (rec.loc if rec else None), node=rec.path if rec else None,
                    hint=e.hint, file=e.file or (rec.file if rec else None))
        except Exception:
            pass


def wire(input_drafts: list, drafts: dict, targets: dict, err, skipped=None) -> nx.MultiDiGraph | None:
    """The graph of the network (inputs first, then op nodes with their resolved sources), or None after
    reporting unresolvable references or a cycle through `err`. skipped: the `when: false` nodes (their
    `in:` is checked and blamed on them)."""
    failed = not check_skipped(skipped or {}, drafts, err)
    for path, rec in drafts.items():
        resolved = []
        for t in targets[path]:
            try:
                resolved.append(resolve(t, drafts))
            except RefError as e:
                if e.skipped is None:  # through a skipped node: check_skipped reported it on that node
                    err(str(e), e.loc or rec.loc, node=path, hint=e.hint, file=e.file or rec.file)
                failed = True
        drafts[path] = replace(rec, sources=tuple(resolved))
    if failed:
        return None
    g = nx.MultiDiGraph()
    for d in input_drafts:
        g.add_node(d.path, **{DRAFT_KEY: d})
    for path, rec in drafts.items():
        g.add_node(path, **{DRAFT_KEY: rec})
    for path, rec in drafts.items():
        for slot, (src, port) in enumerate(rec.sources):
            g.add_edge(src, path, port=port, slot=slot)
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return in_topological_order(g)
    names = [u for u, *_ in cycle] + [cycle[0][0]]
    rec = drafts[cycle[0][0]]
    err(f"cycle: {' -> '.join(names)}", rec.loc, node=cycle[0][0], file=rec.file)
    return None


def in_topological_order(g: nx.MultiDiGraph) -> nx.MultiDiGraph:
    """`in:` may name a later node; the graph's node order is nevertheless one every later stage can
    walk front to back (the spec's order wherever the references allow it)."""
    order = {n: i for i, n in enumerate(g.nodes)}
    topo = list(nx.lexicographical_topological_sort(g, key=lambda n: order[n]))
    if topo == list(g.nodes):
        return g
    out = nx.MultiDiGraph()
    out.graph.update(g.graph)
    for n in topo:
        out.add_node(n, **g.nodes[n])
    for u, v, k, d in g.edges(keys=True, data=True):
        out.add_edge(u, v, key=k, **d)
    return out
