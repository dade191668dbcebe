"""Shape-generic CUDA kernels for plans with optimization profiles.

The lowerings bake every dim into the kernel source as an integer literal (cheap index arithmetic,
exact launch specs). A profile plan cannot ship one kernel per shape, and the device never compiles, so
its kernels are made generic **by comparison**: the builder lowers the plan at many shapes of each
profile (min, opt, max, staggered and random ones) and, per launch, looks at the kernel's *unit* (its
source plus the helper definitions it references, with names normalized) as tokens. Units with the same
tokens apart from integer literals have one **form**; the literals that differ between shapes within a
form are **hoisted**: the generic kernel reads them from a by-value parameter ``__dd`` (a struct of i64,
appended to its parameters) instead. Everything else stays a constant, as in a static plan.

At run time the CUDA backend lowers the plan again at the actual input shapes (pure Python: the same
lowering, tactics pinned to the ones chosen at the profile's opt shape), takes each launch's unit, finds
the compiled generic kernel of its form whose constant literals match, and passes the hoisted literals'
values. Grids, parameters and tables come from that lowering, so they are exact for the shape.

A literal that varies where C needs a constant (template arguments, ``__launch_bounds__``, array sizes,
``case`` labels, preprocessor lines, helper definitions outside the kernel body) cannot be hoisted; the
build names the layer. Pure Python (re, hashlib): imported by the runtime as well as the builder.
"""

from __future__ import annotations

import hashlib
import re

from edgert.errors import UnsupportedError
from edgert.ir.kinds import LayerKind

_TOKEN = re.compile(r"""
    (?P<space>\s+) | (?P<comment>//[^\n]*|/\*.*?\*/) | (?P<pp>\#[^\n]*) | (?P<string>"(?:\\.|[^"\\])*")
  | (?P<float>(?:\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+)[fF]?)
  | (?P<int>0[xX][0-9a-fA-F]+[uUlL]*|\d+[uUlL]*)
  | (?P<ident>[A-Za-z_]\w*) | (?P<op>.)""", re.S | re.X)
_NAME = re.compile(r"^(\w+?)_[0-9a-f]{12}$")
_INT_LIMITS = {"int": (-2**31, 2**31 - 1), "unsigned": (0, 2**32 - 1), "long long": (-2**63, 2**63 - 1),
               "unsigned long long": (0, 2**64 - 1)}


class Unit:
    """One launch's kernel as tokens: ``kinds``/``texts`` per token (no whitespace), the int literal positions
    and whether each may become a runtime value."""

    def __init__(self, text: str, base: str = "kernel"):
        self.base = base
        self.texts, self.kinds, self.spaced = [], [], []   # spaced: whitespace before the token
        space = True
        for match in _TOKEN.finditer(text):
            if match.lastgroup in ("space", "comment"):
                space = True
                continue
            self.kinds.append(match.lastgroup)
            self.texts.append(match.group())
            self.spaced.append(space)
            space = False
        self.literals = [i for i, kind in enumerate(self.kinds) if kind == "int"]
        self.hoistable = _hoistable(self.texts, self.kinds, self.spaced)

    @property
    def form(self) -> str:
        """Digest of the tokens with every int literal blanked: units of one form differ only in literals."""
        blanked = ["#" if kind == "int" else text for kind, text in zip(self.kinds, self.texts)]
        return hashlib.sha256("\x00".join(blanked).encode()).hexdigest()[:20]

    def literal_texts(self) -> list[str]:
        return [self.texts[i] for i in self.literals]


def unit_text(kernels: dict, definitions: dict, name: str) -> str:
    """Kernel ``name`` with the definitions it references (transitively) before it, names normalized:
    the kernel is ``KERNEL``, definitions ``DEF0``, ``DEF1`` ... in order of first reference."""
    source = kernels[name]
    order: list[str] = []
    pending = [source]
    while pending:
        text = pending.pop()
        for ident in re.findall(r"[A-Za-z_]\w*", text):
            if ident in definitions and ident not in order:
                order.append(ident)
                pending.append(definitions[ident])
    text = "\n".join([definitions[d] for d in reversed(order)] + [source])
    renames = {name: "KERNEL", **{d: f"DEF{i}" for i, d in enumerate(order)}}
    return re.sub(r"[A-Za-z_]\w*", lambda m: renames.get(m.group(), m.group()), text)


def kernel_base(name: str) -> str:
    match = _NAME.match(name)
    return match.group(1) if match else "kernel"


def _hoistable(texts: list[str], kinds: list[str], spaced: list[bool]) -> list[bool]:
    """Per token: may it be a runtime value? Only inside the kernel's body, outside constant contexts."""
    flags = [False] * len(texts)
    try:
        start = texts.index("KERNEL")
    except ValueError:
        return flags
    body = next((i for i in range(start, len(texts)) if texts[i] == "{"), len(texts))
    template_depth, paren_stop, case = 0, None, False
    for i in range(body, len(texts)):
        text = texts[i]
        if text == "<" and kinds[i - 1] == "ident" and not spaced[i]:   # the generated code spaces comparisons
            template_depth += 1
        elif text == ">" and template_depth:
            template_depth -= 1
        elif text in ("__launch_bounds__", "static_assert", "alignas") and paren_stop is None:
            paren_stop = _closing(texts, i + 1)
        elif text == "case":
            case = True
        elif text == ":" and case:
            case = False
        if kinds[i] == "int":
            constant = template_depth or case or (paren_stop is not None and i <= paren_stop)
            flags[i] = not constant and not _declarator(texts, kinds, i) and not _in_constexpr(texts, i)
        if paren_stop is not None and i >= paren_stop:
            paren_stop = None
    return flags


def _closing(texts, open_index: int) -> int:
    depth = 0
    for j in range(open_index, len(texts)):
        depth += texts[j] == "("
        depth -= texts[j] == ")"
        if depth == 0:
            return j
    return len(texts)


def _declarator(texts, kinds, i) -> bool:
    """Inside ``[...]`` of a declaration (``float acc[8];``, ``__shared__ T tile[64]``)."""
    depth, j = 0, i - 1
    while j >= 0:
        if texts[j] == "]":
            depth += 1
        elif texts[j] == "[":
            if depth == 0:
                return j >= 2 and kinds[j - 1] == "ident" and kinds[j - 2] == "ident" \
                    and texts[j - 2] not in ("return", "else", "case")
            depth -= 1
        elif texts[j] in (";", "{", "}"):
            return False
        j -= 1
    return False


def _in_constexpr(texts, i) -> bool:
    j = i - 1
    while j >= 0 and texts[j] not in (";", "{", "}"):
        if texts[j] in ("constexpr", "enum"):
            return True
        j -= 1
    return False


# -- build: generic kernels from the units seen at many shapes ------------------------------------------------
def _literal_type(texts: set) -> str:
    suffix = re.sub(r"^(0[xX][0-9a-fA-F]+|\d+)", "", next(iter(texts))).lower()
    if "u" in suffix:
        return "unsigned long long" if "l" in suffix or max(map(literal_value, texts)) >= 2**32 else "unsigned"
    if "l" in suffix or max(map(literal_value, texts)) >= 2**31:
        return "long long"
    return "int"


def literal_value(text: str) -> int:
    digits = re.match(r"0[xX][0-9a-fA-F]+|\d+", text).group()
    return int(digits, 16) if digits[:2].lower() == "0x" else int(digits)


def generalize(samples: list, where: str) -> tuple[str, dict]:
    """(generic kernel source, its table entry) for units of one form seen at several shapes.

    ``samples``: Units of one form; ``where`` names the layer for errors. The entry holds, per literal, its
    text where it is a constant or None where the kernel reads it from ``__dd``, and the C types of those."""
    first = samples[0]
    per_literal = [{unit.texts[i] for unit in samples} for i in first.literals]
    hoisted = [k for k, texts in enumerate(per_literal) if len(texts) > 1]
    for k in hoisted:
        if not first.hoistable[first.literals[k]]:
            position = first.literals[k]
            context = " ".join(first.texts[max(0, position - 6):position + 3])
            raise UnsupportedError(f"{where}: its CUDA kernel needs a dim that changes within the profile "
                                   f"({sorted(per_literal[k], key=literal_value)}) as a compile-time constant "
                                   f"(in `{context}`); not yet supported: pin that dim (--shape) or narrow the profile")
    types = [_literal_type(per_literal[k]) for k in hoisted]
    texts = list(first.texts)
    for j, k in enumerate(hoisted):
        texts[first.literals[k]] = f"(({types[j]})__dd.v[{j}])"
    digest = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:12]
    name = f"{first.base}_g{digest}"
    texts = [name if t == "KERNEL" else (f"{name}_{t.lower()}" if re.fullmatch(r"DEF\d+", t) else t) for t in texts]
    kinds, spaced = list(first.kinds), list(first.spaced)
    if hoisted:
        _add_dims_parameter(texts, kinds, spaced, name)
    source = _join(texts, kinds, spaced)
    if hoisted:
        source = f"struct {name}_dims {{ i64 v[{len(hoisted)}]; }};\n" + source
    entry = {"kernel": name, "literals": [None if k in hoisted else next(iter(per_literal[k]))
                                          for k in range(len(per_literal))], "types": types}
    return source, entry


def _add_dims_parameter(texts: list, kinds: list, spaced: list, name: str) -> None:
    start = texts.index(name)
    close = _closing(texts, start + 1)
    added = ([] if close == start + 2 else [","]) + ["const", f"{name}_dims", "__dd"]
    texts[close:close] = added
    kinds[close:close] = ["op" if t == "," else "ident" for t in added]
    spaced[close:close] = [t != "," for t in added]


def _join(texts: list, kinds: list, spaced: list) -> str:
    """Tokens back to source, spaced where the original had whitespace (``>=`` stays one operator)."""
    out = []
    for text, kind, space in zip(texts, kinds, spaced):
        out.append(f"\n{text}\n" if kind == "pp" else (" " + text if space else text))
    return "".join(out)


# -- run time: the generic kernel of a unit --------------------------------------------------------------------
def match(forms: dict, unit: Unit, where: str) -> tuple[str, list]:
    """(generic kernel name, values of its hoisted literals) for a unit lowered at the current shapes."""
    texts = unit.literal_texts()
    # the most specialized kernel first (fewest literals read at run time: an opt-shape kernel at the opt shape)
    for entry in sorted(forms.get(unit.form, ()), key=lambda e: len(e["types"])):
        fixed = entry["literals"]
        if len(fixed) != len(texts) or any(f is not None and f != t for f, t in zip(fixed, texts)):
            continue
        values = [literal_value(t) for f, t in zip(fixed, texts) if f is None]
        for value, ctype in zip(values, entry["types"]):
            low, high = _INT_LIMITS[ctype]
            if not low <= value <= high:
                break
        else:
            return entry["kernel"], values
    raise UnsupportedError(f"{where}: no CUDA kernel of this plan fits these input shapes (its kernel's form at "
                           "these shapes did not occur at the shapes the build lowered each profile at: min, opt, "
                           "max, staggered and random ones); please report it, and meanwhile narrow the profile "
                           "or pin the dims")


# -- lowering at given input shapes (builder and runtime alike) -----------------------------------------------
def resolved_document(document: dict, shapes: list, attrs: list) -> dict:
    """The plan as if built for these shapes (``edgert.runtime.shapes.specialize``'s tensor shapes and layer
    attrs); memory offsets stay the plan's, whose extents (``planned_tensors``) decide overlaps."""
    resolved = dict(document)
    resolved["planned_tensors"] = document["tensors"]
    resolved["tensors"] = [t if shape is None else dict(t, shape=list(shape))
                           for t, shape in zip(document["tensors"], shapes)]
    resolved["layers"] = [dict(layer, attrs=a) for layer, a in zip(document["layers"], attrs)]
    return resolved


def layer_attrs(document: dict, shapes: list) -> list:
    """Every layer's attrs with its dim expressions evaluated at these tensor shapes."""
    from edgert.runtime.shapes import resolve_attrs

    out = []
    for layer in document["layers"]:
        in_shapes = [shapes[i] if i >= 0 else None for i in layer["inputs"]]
        out.append(resolve_attrs(LayerKind(layer["kind"]), layer.get("attrs") or {}, layer.get("dynamic") or [],
                                 in_shapes))
    return out


class PinnedPolicy:
    """The tactics chosen at a profile's opt shape, by layer name, for every other shape of the profile: the
    same tile, loader and K depth (a K split that the K at hand allows), so the kernels keep their form. Where
    the loader does not apply at a shape (the 1x1 vector loader needs aligned pixel rows), the layer's general
    loader (its last algorithm: im2col, strided) takes over with the same tile; ``general`` forces that (the
    builder compiles those forms too, so any shape finds its kernel)."""

    def __init__(self, pinned: dict, general: bool = False):
        self.pinned, self.general = pinned, general
        self.used: dict[str, int] = {}

    def choose(self, layer: dict, problem):
        from edgert.kernels.cuda.tactics import make_tactic

        name = layer["name"]
        choices = self.pinned.get(name) or []
        index = self.used.get(name, 0)
        self.used[name] = index + 1
        if index >= len(choices):
            raise UnsupportedError(f"layer {name!r}: the plan records no tactic for its matrix product {index}; "
                                   "the plan is corrupt or from another edgert version")
        bm, bn, splits, loader, bk, nj = choices[index]
        if self.general:   # the general loader, K unsplit: the same kernel form at every shape
            loader, splits = problem.algorithms[-1][0], 1
        elif loader not in dict(problem.algorithms):
            loader = problem.algorithms[-1][0]
        return make_tactic(problem, bm, bn, splits, loader, bk, nj), "pinned"


def pinned_tactics(document: dict, decisions) -> dict:
    """{layer name: [[bm, bn, splits, loader, bk, nj], ...]} of a lowering's tactic decisions."""
    pinned: dict[str, list] = {}
    for decision in decisions:
        t = decision.tactic
        pinned.setdefault(document["layers"][decision.layer]["name"], []).append(
            [t.bm, t.bn, t.splits, t.loader, t.bk, t.nj])
    return pinned


def lower_at(document: dict, shapes: list, arch, sm_count: int | None, policy, conservative: bool = False):
    """(context, launches per layer, fused) of the plan lowered at these tensor shapes; ``conservative``:
    without the parity-dependent fast paths (the fallback that serves shapes whose fast form was not compiled)."""
    from edgert.kernels.cuda.lowering import lower_plan

    resolved = resolved_document(document, shapes, layer_attrs(document, shapes))
    return lower_plan(resolved, arch, sm_count=sm_count, policy=policy, conservative=conservative)


def launch_units(ctx, launches: list, layers: list):
    """((layer index, launch index in the layer), launch, Unit) of every launch, in schedule order."""
    for index, entries in enumerate(launches):
        for position, launch in enumerate(entries):
            name = launch["kernel"]
            yield (index, position), launch, Unit(unit_text(ctx.kernels, ctx.definitions, name), kernel_base(name))
