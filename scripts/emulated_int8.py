#!/usr/bin/env python3
"""Which of CED's products can run in int8 and keep the accuracy bound (issue 15)?

A numpy CED forward pass (as scripts/emulated_fp32.py: mean pooling, one chunk) on the
shared `tiny` model and goldens, with each of a block's four Linear products (qkv, proj, fc1,
fc2) computed either with bfloat16-rounded operands (what `--precision bf16` does) or with
`--precision int8`'s quantisation: weights symmetric per output channel (scale max|w|/127),
activations symmetric per row (scale max|x|/127), round half to even. The attention products
(Q·Kᵀ, P·V) are bf16 throughout. Products are summed in float64, so this is the arithmetic's
own error. Prints, per assignment, the largest probability error against the goldens over the
single-chunk clips and whether every clip keeps its top 5 (in order); the bound is 0.01 and
the same top 5. Needs numpy only.

    python3 scripts/emulated_int8.py [../shared/reference]
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import emulated_fp32 as E  # noqa: E402  (loads the model and goldens from argv[1])

W, GOLD, CFG = E.W, E.GOLD, E.CFG
PRODUCTS = ("qkv", "proj", "fc1", "fc2")


def quantize_weight(w):
    """w: [in, out]; symmetric per output channel."""
    s = np.abs(w).max(0, keepdims=True) / 127.0
    s[s == 0] = 1
    return np.clip(np.rint(w / s), -127, 127) * s


def quantize_rows(a):
    s = np.abs(a).max(1, keepdims=True) / 127.0
    s[s == 0] = 1
    return np.clip(np.rint(a / s), -127, 127) * s


def matmul(a, w, mode, parts):
    a, w = a.astype(np.float64), w.astype(np.float64)
    if mode == "bf16":
        return (E.bf16(a).astype(np.float64) @ E.bf16(w).astype(np.float64)).astype(np.float32)
    qa = quantize_rows(a) if "a" in parts else E.bf16(a).astype(np.float64)
    qw = quantize_weight(w) if "w" in parts else E.bf16(w).astype(np.float64)
    return (qa @ qw).astype(np.float32)


def forward(mel, modes, parts="aw"):
    e = "encoder."
    col = lambda name: W[e + name][:, None]  # noqa: E731
    x = (mel - col("init_bn.running_mean")) / np.sqrt(col("init_bn.running_var") + 1e-5) * col("init_bn.weight") + col("init_bn.bias")
    tp = x.shape[1] // 16
    patches = x[:, :tp * 16].reshape(4, 16, tp, 16).transpose(0, 2, 1, 3).reshape(4 * tp, 256)
    h = patches.astype(np.float64) @ W[e + "patch_embed.proj.weight"].reshape(-1, 256).T.astype(np.float64)
    h = h + W[e + "patch_embed.proj.bias"]
    c = h.shape[1]
    h = h.reshape(4, tp, c) + W[e + "time_pos_embed"][0, :, 0, :tp].T[None] + W[e + "freq_pos_embed"][0, :, :, 0].T[:, None]
    h = h.reshape(4 * tp, c).astype(np.float32)
    heads = CFG["num_heads"]
    d = c // heads
    lin = lambda v, p, m: matmul(v, W[p + ".weight"].T, m, parts) + W[p + ".bias"]  # noqa: E731
    r = lambda t: E.bf16(t).astype(np.float64)  # noqa: E731
    for i in range(CFG["depth"]):
        b = f"{e}blocks.{i}."
        q, k, v = lin(E.layer_norm(h, b + "norm1", 1e-6), b + "attn.qkv", modes["qkv"]).reshape(-1, 3, heads, d).transpose(1, 2, 0, 3)
        s = r(q) @ r(k).transpose(0, 2, 1) * d ** -0.5
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        h = h + lin((r(s) @ r(v)).transpose(1, 0, 2).reshape(-1, c).astype(np.float32), b + "attn.proj", modes["proj"])
        u = lin(E.layer_norm(h, b + "norm2", 1e-6), b + "mlp.fc1", modes["fc1"])
        u = (0.5 * u * (1 + E.GELU_ERF(u / np.sqrt(2)))).astype(np.float32)
        h = h + lin(u, b + "mlp.fc2", modes["fc2"])
    last = E.layer_norm(h, e + "norm", 1e-6)
    z = (E.layer_norm(last.mean(0), "outputlayer.0", 1e-5)[None] @ W["outputlayer.1.weight"].T)[0] + W["outputlayer.1.bias"]
    return 1 / (1 + np.exp(-z.astype(np.float64)))


def main():
    clips = sorted({k.split("/")[0] for k in GOLD if k.endswith("/last_hidden_state")})
    mels = {cl: GOLD[cl + "/mel"].astype(np.float32) for cl in clips}
    cases = [("all bf16", set(), "aw")]
    cases += [(f"int8 {p} only", {p}, "aw") for p in PRODUCTS]
    cases += [("int8 fc1 + fc2", {"fc1", "fc2"}, "aw"), ("int8 everywhere", set(PRODUCTS), "aw"),
              ("int8 everywhere, weights only", set(PRODUCTS), "w"), ("int8 everywhere, activations only", set(PRODUCTS), "a")]
    print(f"{len(clips)} single-chunk clips of the tiny goldens; bound: max |Δp| <= 0.01 and the same top 5")
    for label, int8, parts in cases:
        modes = {p: ("int8" if p in int8 else "bf16") for p in PRODUCTS}
        worst, same = 0.0, True
        for cl in clips:
            p, g = forward(mels[cl], modes, parts), GOLD[cl + "/default/output_hf"]
            worst = max(worst, float(np.abs(p - g).max()))
            same &= bool((np.argsort(-p)[:5] == np.argsort(-g)[:5]).all())
        ok = "within" if worst <= 0.01 and same else "OUTSIDE"
        print(f"  {label:36s} max |Δp| {worst:.4f}  top-5 {'same' if same else 'changed'}  -> {ok} the bound", flush=True)


if __name__ == "__main__":
    main()
