#!/usr/bin/env python3
"""How accurate would a float32 product emulated with bfloat16 pieces be for CED?

A numpy CED forward pass (mean pooling, one chunk) on the shared `tiny` model and goldens, with
every Linear product computed one of four ways:

  fp32    float32 operands (the reference path's arithmetic)
  bf16    operands rounded to bfloat16 (what `--precision bf16` does)
  bf16x3  a = a0 + a1, b = b0 + b1 (bfloat16 pieces); a0·b0 + a0·b1 + a1·b0
  bf16x6  three pieces each; the six products with i + j <= 2

Products of pieces are summed in float64 here (AMX sums in float32), so this is the
arithmetic's own error, not a kernel's. It prints the maximum probability and
last-hidden-state error against the goldens (fp32 tolerances: 1e-5 and 1e-4). Used for the
issue-6 decision on an AMX "fp32" mode; needs numpy only.

    python3 scripts/emulated_fp32.py [../shared/reference]
"""
import json
import os
import sys
from math import erf

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import read_safetensors  # noqa: E402

REF = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "shared", "reference")
W = read_safetensors(os.path.join(REF, "models/tiny/model.safetensors"))
CFG = json.load(open(os.path.join(REF, "models/tiny/config.json")))
GOLD = read_safetensors(os.path.join(REF, "golden/tiny.safetensors"))


def bf16(x):
    """Nearest-even bfloat16, kept in a float32 array."""
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) << 16
    return b.astype(np.uint32).view(np.float32)


def pieces(x, n):
    out, rest = [], x.astype(np.float32)
    for _ in range(n):
        p = bf16(rest)
        out.append(p.astype(np.float64))
        rest = (rest - p).astype(np.float32)
    return out


def matmul(a, b, mode):
    if mode == "fp32":
        return a.astype(np.float32) @ b.astype(np.float32)
    n = {"bf16": 1, "bf16x3": 2, "bf16x6": 3}[mode]
    pa, pb = pieces(a, n), pieces(b, n)
    terms = [(i, j) for i in range(n) for j in range(n) if i + j < n]
    return sum(pa[i] @ pb[j] for i, j in terms).astype(np.float32)


GELU_ERF = np.vectorize(erf)


def layer_norm(x, prefix, eps):
    m = x.mean(-1, keepdims=True)
    v = ((x - m) ** 2).mean(-1, keepdims=True)
    return (x - m) / np.sqrt(v + eps) * W[prefix + ".weight"] + W[prefix + ".bias"]


def forward(mel, mode):
    e = "encoder."
    col = lambda name: W[e + name][:, None]  # noqa: E731
    x = (mel - col("init_bn.running_mean")) / np.sqrt(col("init_bn.running_var") + 1e-5) * col("init_bn.weight") + col("init_bn.bias")
    tp = x.shape[1] // 16
    patches = x[:, :tp * 16].reshape(4, 16, tp, 16).transpose(0, 2, 1, 3).reshape(4 * tp, 256)  # tokens in (f t) order
    h = patches.astype(np.float64) @ W[e + "patch_embed.proj.weight"].reshape(-1, 256).T.astype(np.float64)
    h = h + W[e + "patch_embed.proj.bias"]
    c = h.shape[1]
    h = h.reshape(4, tp, c) + W[e + "time_pos_embed"][0, :, 0, :tp].T[None] + W[e + "freq_pos_embed"][0, :, :, 0].T[:, None]
    h = h.reshape(4 * tp, c).astype(np.float32)
    heads = CFG["num_heads"]
    d = c // heads

    def linear(v, prefix):
        return matmul(v, W[prefix + ".weight"].T, mode) + W[prefix + ".bias"]

    for i in range(CFG["depth"]):
        b = f"{e}blocks.{i}."
        q, k, v = linear(layer_norm(h, b + "norm1", 1e-6), b + "attn.qkv").reshape(-1, 3, heads, d).transpose(1, 2, 0, 3)
        s = q @ k.transpose(0, 2, 1) * d ** -0.5
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        h = h + linear((s @ v).transpose(1, 0, 2).reshape(-1, c), b + "attn.proj")
        u = linear(layer_norm(h, b + "norm2", 1e-6), b + "mlp.fc1")
        u = (0.5 * u * (1 + GELU_ERF(u / np.sqrt(2)))).astype(np.float32)
        h = h + linear(u, b + "mlp.fc2")
    last = layer_norm(h, e + "norm", 1e-6)
    z = matmul(layer_norm(last.mean(0), "outputlayer.0", 1e-5)[None], W["outputlayer.1.weight"].T, mode)[0]
    z = z + W["outputlayer.1.bias"]
    return 1 / (1 + np.exp(-z.astype(np.float64))), last


def main():
    clips = sorted({k.split("/")[0] for k in GOLD if k.endswith("/last_hidden_state")})
    for clip in clips:
        mel = GOLD[clip + "/mel"].astype(np.float32)
        probs, hidden = GOLD[clip + "/default/output_hf"], GOLD[clip + "/last_hidden_state"]
        for mode in ("fp32", "bf16", "bf16x3", "bf16x6"):
            p, last = forward(mel, mode)
            top5 = bool((np.argsort(-p)[:5] == np.argsort(-probs)[:5]).all())
            print(f"{clip:34s} {mode:7s} max|Δp| {np.abs(p - probs).max():.1e}  "
                  f"max|Δhidden| {np.abs(last - hidden).max():.1e}  top-5 same: {top5}", flush=True)


if __name__ == "__main__":
    main()
