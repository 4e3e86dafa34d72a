"""The graph stage: one network body -> a checked networkx graph of NodeRecords, as a row of passes.

    expand (builder.graph.expand)   scopes, blocks (builder.graph.blocks), repeats -> NodeDrafts with lazy references
                              (builder.graph.scopes); the network's inputs and outputs
    wire   (builder.graph.wiring)   references -> sources and edges; cycle check; topological order
    infer  (builder.graph.infer)    per node: arguments, input shapes, shape rule, outputs, parameter count
    share  (builder.graph.sharing)  share:/tie: checks and parameter counts

Each pass stops the stage when it reported errors (all of them go to the caller's `diagnostics` list).
"""
from __future__ import annotations

from builder.graph.block_share import apply_block_shares
from builder.graph.expand import Expander
from builder.graph.infer import ParamShapeCache, infer_shapes
from builder.graph.sharing import check_sharing
from builder.core.types import DRAFT_KEY, RECORD_KEY, Network, OutputRef, TensorSpec, record
from builder.graph.wiring import RefError, report_dangling, resolve, wire


def build_network(body, loc, *, file: str, spec_name: str, net_name: str, params: dict, blocks: dict,
                  diagnostics: list, evaluate, cache: ParamShapeCache | None = None,
                  dims: dict | None = None) -> Network | None:
    """The Network of one body (`inputs`, `nodes`, `outputs`), or None with its errors in `diagnostics`.

    file: the spec being read; params: its resolved params; blocks: name -> BlockDef; evaluate(value, env)
    resolves `${...}` (raising ExprError); cache: parameter shapes shared by the networks of one spec;
    dims: the spec's `dims:` declarations (name -> DimDecl).
    """
    ex = Expander(file, params, blocks, diagnostics, evaluate)
    expanded = ex.expand(body, loc)
    if expanded is None:
        return None
    tensor_specs, out_targets = expanded
    apply_block_shares(ex)
    if diagnostics:
        report_dangling(ex.drafts, ex.targets, out_targets, ex.err, ex.skipped)
        return None
    g = wire(ex.input_drafts, ex.drafts, ex.targets, ex.err, ex.skipped)
    if g is None:
        return None
    infer_shapes(g, diagnostics, note=lambda draft: site_note(ex, draft), cache=cache, dims=dims)
    if not diagnostics:
        check_sharing(g, diagnostics)
    outputs = []
    for name, target in out_targets:
        try:
            node, port = resolve(target, ex.drafts)
        except RefError as e:
            ex.err(f"outputs: {e}", e.loc, hint=e.hint, file=e.file)
            continue
        rec = g.nodes[node].get(RECORD_KEY)
        if rec is not None and port not in rec.out_shapes:
            ex.err(f"output '{name}': '{node}' has no output port '{port}'", target.loc, file=target.file,
                   hint=f"its ports are: {', '.join(rec.out_shapes)}")
            continue
        outputs.append(OutputRef(name, node, port))
    if diagnostics:
        return None
    for _, d in g.nodes(data=True):
        del d[DRAFT_KEY]
    tensor_specs = [with_range(g, t) for t in tensor_specs]
    g.graph.update(name=spec_name, network=net_name, inputs=[t.name for t in tensor_specs],
                   outputs=[(o.name, o.node, o.port) for o in outputs], blocks=ex.block_meta)
    return Network(net_name, g, tensor_specs, outputs)


def with_range(g, t: TensorSpec) -> TensorSpec:
    """Integer inputs get the value range their consumers accept (token ids < vocab, masks 0/1)."""
    if t.value_range or not t.dtype.startswith(("int", "bool")):
        return t
    highs = []
    for _, v, data in g.out_edges(t.name, data=True):
        rec = record(g, v)
        if rec.op == "Embedding":
            highs.append(rec.args["num_embeddings"])
        elif rec.slots and data["slot"] < len(rec.slots) and rec.slots[data["slot"]] in ("mask", "key_padding_mask"):
            highs.append(2)
    high = min(highs) if highs else 2
    return TensorSpec(t.name, t.shape, t.dtype, (0, high))


def site_note(ex: Expander, draft) -> str | None:
    """For an error inside an imported file: where the spec being checked uses that block."""
    if draft.file == ex.file:
        return None
    block = draft.block
    while block:
        file, loc = ex.sites.get(block, (None, None))
        if file == ex.file and loc:
            return f"in block '{ex.block_meta[block]['block']}' used at {file}:{loc[0]}"
        block = ex.block_meta.get(block, {}).get("parent", "")
    return None
