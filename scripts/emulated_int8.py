#!/usr/bin/env python3
"""Which of CED's products can run in int8 (or fp16) and keep the accuracy bound?

A numpy CED forward pass on the shared `tiny` model and goldens (every clip, both long-input
semantics: `hf` pools every chunk's tokens, `original` averages the chunks' outputs), with
each kind of product computed in float64 from operands rounded as a quantisation scheme
rounds them:

  bf16       operands rounded to bfloat16 (`--precision bf16`)
  int8       weights symmetric per output channel (`ch`) or per group of G inputs (`grp`);
             activations per row, symmetric (`sym`, zero point 128) or with their own zero
             point (`asym`), optionally per group; optional SmoothQuant migration (alpha)
  fp16       AVX512-FP16-style: operands in fp16 (activation rows scaled by a power of two),
             fp16 fused multiply-add within k blocks of 32, float32 across blocks (--fp16)

It prints, per assignment, the largest probability error against the goldens (and, with
--bench MEL.npy, against fp32 on that mel too) and whether every clip keeps its five highest
classes in order. The bound of `--precision auto`: max |Δp| <= 0.01 and the same top 5.
Needs numpy and scipy. Products are summed in float64, so this is the arithmetic's own error.

    python3 scripts/emulated_int8.py [--shared ../shared] [--bench mel.npy] [--fp16]
"""
import json, os, sys
import numpy as np
from scipy.special import erf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import read_safetensors

ARGS = sys.argv[1:]
def _opt(name, default=None):
    return ARGS[ARGS.index(name) + 1] if name in ARGS else default
REF = os.path.join(_opt("--shared", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared")), "reference")
W = read_safetensors(os.path.join(REF, "models/tiny/model.safetensors"))
CFG = json.load(open(os.path.join(REF, "models/tiny/config.json")))
GOLD = read_safetensors(os.path.join(REF, "golden/tiny.safetensors"))
E = "encoder."


def bf16(x):
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32).astype(np.float64)


def ln(x, prefix, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * W[prefix + ".weight"] + W[prefix + ".bias"]


# ---- quantisers -------------------------------------------------------------
def q_sym(x, axis, bits=8):
    qmax = 2 ** (bits - 1) - 1
    s = np.abs(x).max(axis, keepdims=True) / qmax
    s[s == 0] = 1
    return np.clip(np.rint(x / s), -qmax, qmax) * s


def q_asym(x, axis, bits=8):
    """Asymmetric (zero point), as u8 activations with a per-row offset."""
    lo = np.minimum(x.min(axis, keepdims=True), 0)
    hi = np.maximum(x.max(axis, keepdims=True), 0)
    s = (hi - lo) / (2 ** bits - 1)
    s[s == 0] = 1
    z = np.rint(-lo / s)
    return (np.clip(np.rint(x / s) + z, 0, 2 ** bits - 1) - z) * s


def grouped(fn, x, axis_k, g):
    """Apply fn per group of g along the k axis (axis_k), fn reduces along axis_k."""
    k = x.shape[axis_k]
    if g is None or g >= k:
        return fn(x, axis_k)
    out = np.empty_like(x)
    for s in range(0, k, g):
        sl = [slice(None)] * x.ndim
        sl[axis_k] = slice(s, min(k, s + g))
        out[tuple(sl)] = fn(x[tuple(sl)], axis_k)
    return out


def make_quant(spec):
    """spec: dict with w: ('ch'|'grp', g) ; a: ('sym'|'asym', g|None) ; smooth: alpha|None"""
    def prod(a, w):  # a [m,k], w [k,n]
        a = a.astype(np.float64); w = w.astype(np.float64)
        if spec.get("mode") == "bf16":
            return bf16(a) @ bf16(w)
        if spec.get("mode") == "fp32":
            return a @ w
        sm = spec.get("smooth")
        if sm is not None:
            amax = np.abs(a).max(0) + 1e-8
            wmax = np.abs(w).max(1) + 1e-8
            s = amax ** sm / wmax ** (1 - sm)
            a = a / s
            w = w * s[:, None]
        wq = spec.get("w", ("ch", None))
        if wq[0] == "none":
            qw = bf16(w)
        else:
            qw = grouped(lambda x, ax: q_sym(x, ax, spec.get("wbits", 8)), w, 0, wq[1])
        aq = spec.get("a", ("sym", None))
        if aq[0] == "none":
            qa = bf16(a)
        elif aq[0] == "sym":
            qa = grouped(lambda x, ax: q_sym(x, ax, spec.get("abits", 8)), a, 1, aq[1])
        else:
            qa = grouped(lambda x, ax: q_asym(x, ax, spec.get("abits", 8)), a, 1, aq[1])
        return qa @ qw
    return prod


# ---- the model ----------------------------------------------------------------
def encode_chunk(x, quant):
    """x: [64, T] after BatchNorm (T ≤ 1012, padded)."""
    tp = x.shape[1] // 16
    patches = x[:, :tp * 16].reshape(4, 16, tp, 16).transpose(0, 2, 1, 3).reshape(4 * tp, 256)
    h = patches.astype(np.float64) @ W[E + "patch_embed.proj.weight"].reshape(-1, 256).T.astype(np.float64)
    h = h + W[E + "patch_embed.proj.bias"]
    c = h.shape[1]
    h = h.reshape(4, tp, c) + W[E + "time_pos_embed"][0, :, 0, :tp].T[None] + W[E + "freq_pos_embed"][0, :, :, 0].T[:, None]
    h = h.reshape(4 * tp, c)
    heads = CFG["num_heads"]; d = c // heads
    for i in range(CFG["depth"]):
        b = f"{E}blocks.{i}."
        def lin(v, name, prod):
            return quant[prod](v, W[b + name + ".weight"].T) + W[b + name + ".bias"]
        qkv = lin(ln(h, b + "norm1", 1e-6), "attn.qkv", "qkv").reshape(-1, 3, heads, d).transpose(1, 2, 0, 3)
        q, k, v = qkv
        s = np.stack([quant["qk"](q[j] * d ** -0.5, k[j].T) for j in range(heads)])
        s = np.exp(s - s.max(-1, keepdims=True)); s /= s.sum(-1, keepdims=True)
        o = np.stack([quant["pv"](s[j], v[j]) for j in range(heads)])
        h = h + lin(o.transpose(1, 0, 2).reshape(-1, c), "attn.proj", "proj")
        u = lin(ln(h, b + "norm2", 1e-6), "mlp.fc1", "fc1")
        u = 0.5 * u * (1 + erf(u / np.sqrt(2)))
        h = h + lin(u, "mlp.fc2", "fc2")
    return ln(h, E + "norm", 1e-6)


def head(v):
    z = ln(v, "outputlayer.0", 1e-5) @ W["outputlayer.1.weight"].T.astype(np.float64) + W["outputlayer.1.bias"]
    return 1 / (1 + np.exp(-z))


def forward(mel, quant):
    col = lambda n: W[E + n][:, None]
    x = (mel - col("init_bn.running_mean")) / np.sqrt(col("init_bn.running_var") + 1e-5) * col("init_bn.weight") + col("init_bn.bias")
    T = x.shape[1]; tl = 1012
    if T <= tl:
        chunks = [x]
    else:
        n = T // tl + (1 if T % tl else 0)
        chunks = []
        for s in range(n):
            c = x[:, s * tl:(s + 1) * tl]
            if c.shape[1] < tl:
                c = np.concatenate([c, np.zeros((64, tl - c.shape[1]))], 1)
            chunks.append(c)
    toks = [encode_chunk(c, quant) for c in chunks]
    hf = head(np.concatenate(toks, 0).mean(0))
    orig = np.mean([head(t.mean(0)) for t in toks], 0)
    return hf, orig


CLIPS = sorted({k.split("/")[0] for k in GOLD if k.endswith("/mel")})


def bench_mel():
    p = _opt("--bench")
    return np.load(p).astype(np.float64) if p else None


def evaluate(label, quant, ref_cache={}):
    worst, same = 0.0, True
    detail = []
    for cl in CLIPS:
        mel = GOLD[cl + "/mel"].astype(np.float64)
        hf, orig = forward(mel, quant)
        g_hf = GOLD[cl + "/default/output_hf"]; g_or = GOLD[cl + "/default/output_original"]
        for p, g in ((hf, g_hf), (orig, g_or)):
            e = float(np.abs(p - g).max())
            worst = max(worst, e)
            same &= bool((np.argsort(-p)[:5] == np.argsort(-g)[:5]).all())
        detail.append(f"{float(np.abs(hf - g_hf).max()):.4f}")
    bm = bench_mel()
    if bm is not None:
        key = "bench"
        if key not in ref_cache:
            fp = {p: make_quant({"mode": "fp32"}) for p in ("qkv", "proj", "fc1", "fc2", "qk", "pv")}
            ref_cache[key] = forward(bm, fp)
        hf, orig = forward(bm, quant)
        for p, g in zip((hf, orig), ref_cache[key]):
            e = float(np.abs(p - g).max()); worst = max(worst, e)
            same &= bool((np.argsort(-p)[:5] == np.argsort(-g)[:5]).all())
        detail.append(f"bench {float(np.abs(hf - ref_cache[key][0]).max()):.4f}")
    print(f"{label:60s} max|Δp| {worst:.4f} top5 {'same' if same else 'CHANGED'} {'OK' if worst <= 0.01 and same else '--'}  [{' '.join(detail)}]", flush=True)
    return worst, same


def fp16(x):
    return x.astype(np.float16).astype(np.float64)


def make_fp16(kb=32, acc16=True, scale_rows=True):
    """AVX512-FP16 emulation: operands rounded to fp16 (activation rows scaled by a power of
    two so their max is ~1), fma accumulation in fp16 within k-blocks of kb, fp32 across."""
    def prod(a, w):
        a = a.astype(np.float64); w = w.astype(np.float64)
        if scale_rows:
            e = np.floor(np.log2(np.abs(a).max(1, keepdims=True) + 1e-30))
            sa = 2.0 ** e
        else:
            sa = np.ones((a.shape[0], 1))
        a16 = fp16(a / sa); w16 = fp16(w)
        m, k = a16.shape; n = w16.shape[1]
        out = np.zeros((m, n), np.float32)
        for s in range(0, k, kb):
            if acc16:
                acc = np.zeros((m, n), np.float16)
                for p in range(s, min(k, s + kb)):
                    # fma: a*b + acc rounded once (emulate with float64 then round)
                    acc = (a16[:, p:p + 1] * w16[p:p + 1, :] + acc.astype(np.float64)).astype(np.float16)
                out = (out.astype(np.float64) + acc.astype(np.float64)).astype(np.float32)
            else:
                out = (out.astype(np.float64) + a16[:, s:s + kb] @ w16[s:s + kb]).astype(np.float32)
        return out.astype(np.float64) * sa
    return prod


def main():
    bf = make_quant({"mode": "bf16"})
    fp = make_quant({"mode": "fp32"})
    prods = ("qkv", "proj", "fc1", "fc2", "qk", "pv")

    def run(label, base, over):
        q = {p: base for p in prods}
        q.update(over)
        evaluate(label, q)

    ch_sym = make_quant({"w": ["ch", None], "a": ["sym", None]})
    ch_asym = make_quant({"w": ["ch", None], "a": ["asym", None]})
    g32 = make_quant({"w": ["grp", 32], "a": ["asym", None]})
    g32g = make_quant({"w": ["grp", 32], "a": ["asym", 32]})
    w_only = make_quant({"w": ["ch", None], "a": ["none", None]})
    a_only = make_quant({"w": ["none", None], "a": ["asym", None]})
    linear = ("qkv", "proj", "fc1", "fc2")
    print(f"tiny goldens: {len(CLIPS)} clips, both chunkings; bound: max |Δp| <= 0.01 and the same top 5", flush=True)
    run("bf16 everywhere", bf, {})
    for p in linear:
        run(f"bf16, int8 {p} only (ch/sym)", bf, {p: ch_sym})
    run("fp32, int8 fc1 only (ch/asym)", fp, {"fc1": ch_asym})
    run("bf16, int8 fc1 only (ch/asym)", bf, {"fc1": ch_asym})
    run("bf16, int8 fc1 only (grp32/asym)", bf, {"fc1": g32})
    run("bf16, int8 fc1 + fc2 (grp32/asym)", bf, {"fc1": g32, "fc2": g32})
    run("int8 all four (ch/sym)", bf, {p: ch_sym for p in linear})
    run("int8 all four (ch/asym)", bf, {p: ch_asym for p in linear})
    run("int8 all four (grp32/asym)", bf, {p: g32 for p in linear})
    run("int8 all four (grp32/asym per group of 32)", bf, {p: g32g for p in linear})
    run("int8 all four, weights only (ch)", bf, {p: w_only for p in linear})
    run("int8 all four, activations only (asym)", bf, {p: a_only for p in linear})
    if "--fp16" in ARGS:
        f16 = make_fp16(32, True)
        run("fp16 all four (k blocks of 32)", bf, {p: f16 for p in linear})
        run("fp16 all four + attention", bf, {p: f16 for p in prods})


if __name__ == "__main__":
    main()
