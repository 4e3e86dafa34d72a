"""Block instances: a node with `block:` expands the block's nodes in a scope of its own, `repeat:` times.

Checks the block definition (params, inputs, nodes, outputs), the instance's params and connections,
and records the block table (`g.graph["blocks"]`) and where each instance is used.
"""
from __future__ import annotations

from builder.core.errors import did_you_mean
from builder.graph.scopes import BlockExport, ExportRef, NameRef, Scope
from builder.core.types import BLOCK_KEYS, MAX_BLOCK_DEPTH, MAX_REPEAT, NODE_KEYS
from builder.text.yaml_loader import LocDict, LocList
from builder.text.yaml_loader import to_plain as _plain


def add_block(ex, entry, scope, local, path, targets, slots, loc, file, stack):
    """Instantiate block `entry` (`block: name`, `repeat:`, params) at `path` in `scope` through expander `ex`."""
    name = entry["block"]
    bdef = ex.blocks.get(name) if isinstance(name, str) else None
    if bdef is None:
        ex.err(f"unknown block '{name}'", entry.loc_of("block"), node=path, file=file,
               hint=did_you_mean(name, ex.blocks) or (f"blocks are: {', '.join(ex.blocks)}"
                                                      if ex.blocks else "this spec defines no blocks"))
        return
    if name in stack:
        ex.err(f"recursive block: {' -> '.join(stack + (name,))}", entry.loc_of("block"), node=path, file=file)
        return
    if len(stack) >= MAX_BLOCK_DEPTH:
        ex.err(f"blocks nested deeper than {MAX_BLOCK_DEPTH}", loc, node=path, file=file)
        return
    body = bdef.body
    bfile = bdef.file
    for k in body:
        if k not in BLOCK_KEYS:
            ex.err(f"unknown key '{k}' in block '{name}'", body.loc_of(k), hint=did_you_mean(k, BLOCK_KEYS),
                   file=bfile)
    decl = body.get("params") or LocDict()
    if not isinstance(decl, dict):
        ex.err(f"block '{name}' params must be a mapping", body.loc_of("params"), file=bfile)
        decl = LocDict()
    block_inputs = body.get("inputs") or ["x"]
    if isinstance(block_inputs, str):
        block_inputs = [block_inputs]
    if not isinstance(block_inputs, list) or not all(isinstance(b, str) and b.isidentifier()
                                                     for b in block_inputs):
        ex.err(f"block '{name}' inputs must be a list of names, got {_plain(block_inputs)!r}",
               body.loc_of("inputs"), file=bfile)
        return
    inner_nodes = body.get("nodes")
    if not isinstance(inner_nodes, dict) or not inner_nodes:
        ex.err(f"block '{name}' needs `nodes:`", bdef.loc, file=bfile)
        return
    block_outputs = body.get("outputs") or [list(inner_nodes)[-1]]
    if isinstance(block_outputs, str):
        block_outputs = [block_outputs]
    if isinstance(block_outputs, dict):
        out_pairs = list(block_outputs.items())
    elif isinstance(block_outputs, list):
        out_pairs = [(str(o).rsplit(".", 1)[-1], o) for o in block_outputs]
    else:
        ex.err(f"block '{name}' outputs must be a list of its node names, got {block_outputs!r}",
               body.loc_of("outputs"), file=bfile)
        return
    # instance args: declared block params only
    inst_args = {k: v for k, v in entry.items() if k not in NODE_KEYS}
    for k in inst_args:
        if k not in decl:
            ex.err(f"block '{name}' has no param '{k}'", entry.loc_of(k), node=path, file=file,
                   hint=did_you_mean(k, decl) or (f"its params are: {', '.join(decl)}" if decl else
                                                  "it declares no params"))
    for k in ("tie", "trainable"):
        if k in entry:
            ex.err(f"`{k}` applies to op nodes, not to block instances", entry.loc_of(k), node=path, file=file)
    if "share" in entry:  # every module of this instance is the one at the same path in OTHER (block_share.py)
        other = ex.ev(entry["share"], scope.env, entry.loc_of("share"), path, file)
        if isinstance(other, str) and other:
            ex.block_shares.append((path, other, entry.loc_of("share"), file))
        elif other is not None:
            ex.err(f"`share` must name another block instance's spec path, got {other!r}", entry.loc_of("share"),
                   node=path, file=file)
    # inputs of the instance
    if slots is not None:
        by_name = dict(zip(slots, targets))
        for s in slots:
            if s not in block_inputs:
                ex.err(f"block '{name}' has no input '{s}'", entry.loc_of("in"), node=path, file=file,
                       hint=did_you_mean(s, block_inputs))
        inst_inputs = []
        for i, b_in in enumerate(block_inputs):
            if b_in in by_name:
                inst_inputs.append(by_name[b_in])
            elif i == 0 and "in" not in entry:
                inst_inputs.append(targets[0] if targets else None)
            else:
                ex.err(f"block '{name}' input '{b_in}' is not connected", entry.loc_of("in"), node=path,
                       file=file)
                return
    else:
        if len(targets) > len(block_inputs):
            ex.err(f"block '{name}' takes {len(block_inputs)} input(s), got {len(targets)}",
                   entry.loc_of("in") if "in" in entry else loc, node=path, file=file)
            return
        if len(targets) < len(block_inputs):
            ex.err(f"block '{name}' takes inputs {block_inputs}; connect them with in: {{...}}",
                   entry.loc_of("in") if "in" in entry else loc, node=path, file=file)
            return
        inst_inputs = list(targets)
    repeat = None
    if "repeat" in entry:
        repeat = ex.ev(entry["repeat"], scope.env, entry.loc_of("repeat"), path, file)
        if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= MAX_REPEAT:
            if repeat is not None:
                ex.err(f"repeat must be an integer between 1 and {MAX_REPEAT}, got {repeat!r}",
                       entry.loc_of("repeat"), node=path, file=file)
            return
    if repeat is not None and len(out_pairs) > len(block_inputs):
        ex.err(f"block '{name}' is repeated but has {len(out_pairs)} outputs and {len(block_inputs)} input(s): "
               "a copy's outputs feed the next copy's first inputs by position, so a repeated block needs at least "
               "as many inputs as outputs", entry.loc_of("repeat"), node=path, file=file,
               hint=f"block '{name}' is defined at {bfile}:{bdef.loc[0]}" if bdef.loc else None)
        return
    copies = repeat or 1
    if repeat:
        ex.block_meta[path] = {"block": name, "repeat": repeat, "index": None, "parent": scope.prefix[:-1]}
    export, exports = None, []
    for k in range(copies):
        copy_path = f"{path}.{k}" if repeat else path
        caller_env = dict(scope.env)
        if repeat:
            caller_env["i"] = k
        values = dict(ex.params)
        inner = Scope(copy_path + ".", bfile, values)  # a param's default may read dim() of the block's inputs
        for p, default in decl.items():
            if p in inst_args:
                v = ex.ev(inst_args[p], caller_env, entry.loc_of(p), path, file, scope=scope)
            else:
                v = ex.ev(default, values, decl.loc_of(p), f"{name}.params.{p}", bfile, scope=inner)
            values[p] = v
        values["i"] = k if repeat else 0
        for i, b_in in enumerate(block_inputs):
            target = inst_inputs[i]
            if k > 0 and i < len(out_pairs):  # the previous copy's output at the same position
                target = ExportRef(export, None, loc, file, index=i)
            inner.table[b_in] = ("input", target)
        ex.block_meta[copy_path] = {"block": name, "repeat": None, "index": k if repeat else None,
                                      "parent": path if repeat else scope.prefix[:-1]}
        ex.sites[copy_path] = (file, loc)
        first = NameRef(inner, block_inputs[0], None, bdef.loc, bfile)
        ex.expand_scope(inner_nodes, inner, first, stack + (name,), block_type=name)
        out_locs = block_outputs if isinstance(block_outputs, (LocList, LocDict)) else None
        outs = []
        for j, (port, ref) in enumerate(out_pairs):
            oloc = (out_locs.loc_of(j) if isinstance(out_locs, LocList) else
                    out_locs.loc_of(port) if isinstance(out_locs, LocDict) else bdef.loc)
            ref = str(ref) if isinstance(ref, int) and not isinstance(ref, bool) else ref  # digit names
            if not isinstance(ref, str):
                ex.err(f"block '{name}' outputs must name its nodes, got {ref!r}", oloc, file=bfile)
                continue
            outs.append((str(port), ex.parse_ref(ref, inner, oloc, bfile)))
        export = BlockExport(copy_path, outs)
        exports.append(export)
    if repeat:
        export = BlockExport(export.path, export.outputs, exports)
    scope.table[local] = ("block", export)

