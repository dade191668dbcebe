"""RNN (LSTM, GRU, plain RNN cells) on CUDA: one thread block per (direction, batch row) walks the sequence.

Each time step is a few short phases separated by barriers: the gate rows (x_t · W + h · R + biases, one
thread per row, strided over the block) into the workspace; the cell update of each hidden unit (GRU: the
gates first, then the candidate that needs the whole reset-scaled h); then the new h and c written back and
y stored. The sequence loop, direction, activations
(with alpha, beta and clip), peepholes, input_forget and linear_before_reset are baked into the source.
The numerics follow the CPU reference (kernels/cpu/recurrent.py): float compute (double for float64),
clip on every gate's input but not on the cell state, y zero past each sequence's length and the state
frozen there. This is a latency-bound kernel for the small recurrent layers of streaming and OCR models:
nothing is tiled or kept in tensor cores.
"""

from __future__ import annotations

from edgert.ir.kinds import ActivationType as A, LayerKind, RNNActivation as F, RNNCell
from edgert.kernels.cuda import codegen as cg
from edgert.kernels.cuda.library import Launch, LowerContext, lowering, ptr

BLOCK = 256
GATES = {RNNCell.LSTM: 4, RNNCell.GRU: 3, RNNCell.RNN: 1}
# ONNX recurrent activations that are per-element Activation types of the code generator
_AS_ACTIVATION = {F.RELU: A.RELU, F.TANH: A.TANH, F.SIGMOID: A.SIGMOID, F.LEAKY_RELU: A.LEAKY_RELU,
                  F.THRESHOLDED_RELU: A.THRESHOLDED_RELU, F.HARD_SIGMOID: A.HARD_SIGMOID, F.ELU: A.ELU,
                  F.SOFTSIGN: A.SOFTSIGN, F.SOFTPLUS: A.SOFTPLUS}


def activation(function, x: str, t: str, clip) -> str:
    """C expression of function(clip(x)); function = [RNNActivation, alpha, beta]."""
    name, alpha, beta = F(function[0]), float(function[1]), float(function[2])
    if clip is not None:
        low, high = cg.literal(-float(clip), t), cg.literal(float(clip), t)
        x = f"({x} < {low} ? {low} : ({x} > {high} ? {high} : {x}))"
    x = f"(({t}){x})"
    if name == F.AFFINE:
        return f"({cg.literal(alpha, t)} * {x} + {cg.literal(beta, t)})"
    if name == F.SCALED_TANH:
        return f"({cg.literal(alpha, t)} * {'tanhf' if t == 'float' else 'tanh'}({cg.literal(beta, t)} * {x}))"
    expr, _ = cg.emit_instruction(LayerKind.ACTIVATION, {"type": _AS_ACTIVATION[name], "alpha": alpha,
                                                          "beta": beta}, [(x, t)])
    return expr


@lowering(LayerKind.RNN)
def lower_rnn(ctx: LowerContext, layer: dict, fusion: dict) -> list[Launch]:
    attrs = layer["attrs"]
    cell = RNNCell(attrs["cell"])
    inputs = dict(zip(("x", "w", "r", "b", "lens", "h0", "c0", "p"), list(layer["inputs"]) + [-1] * 8))
    outputs = dict(zip(("y", "y_h", "y_c"), list(layer["outputs"]) + [-1]))
    seq, batch, width = ctx.shape(inputs["x"])
    hidden, directions = int(attrs["hidden_size"]), int(attrs["directions"])
    rows = GATES[cell] * hidden
    dtype = ctx.dtype(inputs["x"])
    t = "double" if dtype == "float64" else "float"
    stride = rows + 3 * hidden              # per block: gates, h, c, and a helper row (GRU products, LSTM new c)
    ctx.need_workspace(directions * batch * stride * (8 if t == "double" else 4))
    storage = cg.ctype(dtype)
    args, params = [], []
    for name, tensor in inputs.items():
        element = cg.ctype(ctx.dtype(tensor)) if tensor >= 0 else storage
        args.append(f"const {element}* __restrict__ {name}")
        params.append(ptr(tensor) if tensor >= 0 else ["0"])
    for name, tensor in outputs.items():
        args.append(f"{storage}* __restrict__ {name}")
        params.append(ptr(tensor) if tensor >= 0 else ["0"])
    args.append(f"{t}* __restrict__ work")
    params.append(["w", 0])
    code = _Code(cell, attrs, t, dtype, {name: tensor >= 0 for name, tensor in inputs.items()},
                 ctx.dtype(inputs["lens"]) if inputs["lens"] >= 0 else None)
    source = _SKELETON.format(args=", ".join(args), t=t, block=BLOCK, storage_zero=storage, SEQ=seq, B=batch,
                              I=width, H=hidden, D=directions, ROWS=rows, STRIDE=stride, functions=code.functions(),
                              reverse="true" if attrs.get("reverse") else "false", init=code.init(),
                              length=code.length(), gates=code.gate_rows(), update=code.update(),
                              commit=code.commit(), finish=code.finish())
    return [Launch(ctx.kernel(f"rnn_{cell.value}", source), (directions, batch, 1), (BLOCK, 1, 1), params,
                   tactic=f"rnn {cell.value} block/sequence")]


class _Code:
    """The C statements of one RNN layer's kernel, each phase baked for its cell and present inputs."""

    def __init__(self, cell, attrs, t: str, dtype: str, present: dict, lens_dtype):
        self.cell, self.attrs, self.t, self.dtype, self.present = cell, attrs, t, dtype, present
        self.lens_dtype = lens_dtype
        self.lbr = cell == RNNCell.GRU and bool(attrs.get("linear_before_reset"))

    def load(self, name: str, index: str) -> str:
        return f"({self.t}){cg.load(name, index, self.dtype)}"

    def store(self, name: str, index: str, value: str) -> str:
        return f"{name}[{index}] = {cg.store_value(value, self.dtype)};"

    def functions(self) -> str:
        """One lambda per function of the cell (act0, act1, ...), choosing the block's direction; hact without clip."""
        t, clip, per_direction = self.t, self.attrs.get("clip"), self.attrs["activations"]
        # LSTM's third function (h) reads the cell state, which onnxruntime does not clip
        named = [(f"act{i}", i, clip) for i in range(min(len(per_direction[0]), 2))]
        if self.cell == RNNCell.LSTM:
            named.append(("hact", 2, None))
        lines = []
        for name, i, limit in named:
            choices = [activation(functions[i], "v", t, limit) for functions in per_direction]
            expr = choices[0] if len(choices) == 1 else f"(d == 0 ? {choices[0]} : {choices[1]})"
            lines.append(f"auto {name} = [&](const {t} v) -> {t} {{ return {expr}; }};")
        return "\n    ".join(lines)

    def init(self) -> str:
        t, state = self.t, "(i64(d) * B + n) * H + j"
        h = self.load("h0", state) if self.present["h0"] else f"({t})0"
        c = self.load("c0", state) if self.present["c0"] and self.cell == RNNCell.LSTM else f"({t})0"
        return f"h[j] = {h}; c[j] = {c};"

    def length(self) -> str:
        return f"i64({cg.load('lens', 'n', self.lens_dtype)})" if self.present["lens"] else "i64(SEQ)"

    def gate_rows(self) -> str:
        t, has_b = self.t, self.present["b"]
        recurrent_bias = f"acc += {self.load('b', 'i64(d) * 2 * ROWS + ROWS + row')};" if has_b else ""
        h_gate = ""
        if self.cell == RNNCell.GRU and self.lbr:   # h . Rh + Rbh kept apart, to be scaled by the reset gate
            h_gate = f"""if (row >= 2 * H) {{
                {t} rec = {self.load('b', 'i64(d) * 2 * ROWS + ROWS + row') if has_b else f'({t})0'};
                for (int k = 0; k < H; ++k) rec += h[k] * {self.load('r', '(i64(d) * ROWS + row) * H + k')};
                extra[row - 2 * H] = rec;
                gates[row] = acc;
                continue;
            }}"""
        elif self.cell == RNNCell.GRU:              # (r * h) . Rh comes after the reset gate
            h_gate = f"if (row >= 2 * H) {{ {recurrent_bias} gates[row] = acc; continue; }}"
        return f"""for (int row = threadIdx.x; row < ROWS; row += {BLOCK}) {{
            {t} acc = 0;
            const i64 wrow = (i64(d) * ROWS + row) * I, xrow = (i64(step_t) * B + n) * I;
            for (int k = 0; k < I; ++k) acc += {self.load('x', 'xrow + k')} * {self.load('w', 'wrow + k')};
            {f"acc += {self.load('b', 'i64(d) * 2 * ROWS + row')};" if has_b else ""}
            {h_gate}
            {recurrent_bias}
            for (int k = 0; k < H; ++k) acc += h[k] * {self.load('r', '(i64(d) * ROWS + row) * H + k')};
            gates[row] = acc;
        }}"""

    def update(self) -> str:
        """New h of every hidden unit into update[j] (over gates[j], read only by the same thread before)."""
        t = self.t
        if self.cell == RNNCell.RNN:
            return f"for (int j = threadIdx.x; j < H; j += {BLOCK}) update[j] = act0(gates[j]);"
        if self.cell == RNNCell.LSTM:
            peep = self.present["p"]
            p = lambda offset: self.load("p", f"i64(d) * 3 * H + {offset} + j")   # noqa: E731
            forget = "(1 - i_g)" if self.attrs.get("input_forget") else "act0(f_in)"
            return f"""for (int j = threadIdx.x; j < H; j += {BLOCK}) {{
            {t} i_in = gates[j], o_in = gates[H + j], f_in = gates[2 * H + j];
            {f"i_in += {p('0')} * c[j]; f_in += {p('2 * H')} * c[j];" if peep else ""}
            const {t} i_g = act0(i_in);
            const {t} f_g = {forget};
            const {t} c_new = f_g * c[j] + i_g * act1(gates[3 * H + j]);
            {f"o_in += {p('H')} * c_new;" if peep else ""}
            extra[j] = c_new;
            update[j] = act0(o_in) * hact(c_new);
        }}"""
        reset_side = "r_g * extra[j]" if self.lbr else "rd"
        product = "" if self.lbr else \
            f"for (int k = 0; k < H; ++k) rd += extra[k] * {self.load('r', '(i64(d) * ROWS + 2 * H + j) * H + k')};"
        return f"""for (int j = threadIdx.x; j < H; j += {BLOCK}) {{
            const {t} z_g = act0(gates[j]), r_g = act0(gates[H + j]);
            gates[j] = z_g;
            gates[H + j] = r_g;
            {"" if self.lbr else "extra[j] = r_g * h[j];"}
        }}
        __syncthreads();
        for (int j = threadIdx.x; j < H; j += {BLOCK}) {{
            const {t} r_g = gates[H + j];
            {t} rd = 0;
            {product}
            const {t} cand = act1(gates[2 * H + j] + {reset_side});
            update[j] = cand + gates[j] * (h[j] - cand);
        }}"""

    def commit(self) -> str:
        keep_c = "c[j] = extra[j];" if self.cell == RNNCell.LSTM else ""
        return f"h[j] = update[j]; {keep_c} {self.store('y', 'yrow + j', 'h[j]')}"

    def finish(self) -> str:
        """Final states; a sequence of length 0 ends with zeros (as onnxruntime gives)."""
        state, zero = "(i64(d) * B + n) * H + j", f"({self.t})0"
        c = self.store("y_c", state, f"len > 0 ? c[j] : {zero}") if self.cell == RNNCell.LSTM else ""
        return f"{self.store('y_h', state, f'len > 0 ? h[j] : {zero}')} {c}"


_SKELETON = """
extern "C" __global__ void __launch_bounds__({block}) KERNEL({args}) {{
    const int SEQ = {SEQ}, B = {B}, I = {I}, H = {H}, D = {D}, ROWS = {ROWS};
    (void)D; (void)I;
    const int d = blockIdx.x, n = blockIdx.y;
    const bool reverse = d == 1 || {reverse};
    {t}* gates = work + (i64(d) * B + n) * {STRIDE};
    {t}* h = gates + ROWS;
    {t}* c = h + H;
    {t}* extra = c + H;
    {t}* update = gates;
    {functions}
    for (int j = threadIdx.x; j < H; j += {block}) {{ {init} }}
    __syncthreads();
    const i64 len = {length};
    for (int step = 0; step < SEQ; ++step) {{
        const int step_t = reverse ? SEQ - 1 - step : step;
        const i64 yrow = ((i64(step_t) * D + d) * B + n) * H;
        if (step_t >= len) {{
            for (int j = threadIdx.x; j < H; j += {block}) y[yrow + j] = zero_of<{storage_zero}>();
            continue;
        }}
        {gates}
        __syncthreads();
        {update}
        __syncthreads();
        for (int j = threadIdx.x; j < H; j += {block}) {{ {commit} }}
        __syncthreads();
    }}
    for (int j = threadIdx.x; j < H; j += {block}) {{ {finish} }}
}}
"""
