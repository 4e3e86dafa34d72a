"""A third-party op for the plug-in tests: `build --plugin plugin_ops_example check SPEC`.

Importing this module registers `double_it` (y = 2x, no parameters) and `ScaledLinear` (a Linear whose
output is multiplied by a fixed factor; in_features inferred). A spec can name these ops only after the
module was imported by `--plugin` or an entry point: a spec itself never imports code.
"""
from torch import nn

from builder.shapes import rules as S
from builder.ops import OpDef, register
from builder.shapes.rules import ShapeError


class DoubleIt(nn.Module):
    def forward(self, x):
        return x * 2


class ScaledLinear(nn.Linear):
    def __init__(self, in_features, out_features, factor=1.0):
        super().__init__(in_features, out_features)
        self.factor = factor

    def forward(self, x):
        return super().forward(x) * self.factor


def _scaled_linear(ctx):
    x = ctx.shapes[0]
    if not S.is_static(x[-1]):
        raise ShapeError(f"ScaledLinear needs a static last dim, got {S.fmt(x)}")
    ctx.args["in_features"] = x[-1]
    return x[:-1] + (ctx.args["out_features"],)


register(OpDef("double_it", lambda ctx: ctx.shapes[0], build=lambda a: DoubleIt(), arg_names=(),
               doc="y = 2x", category="plugin"))
register(OpDef("ScaledLinear", _scaled_linear, build=lambda a: ScaledLinear(**a),
               arg_names=("out_features", "factor", "in_features"), required=("out_features",),
               inferred=("in_features",), category="plugin"))
