#!/usr/bin/env python3
"""Independent float64 reference for a CED case that is not in ../shared.

Written from the upstream semantics (torchaudio MelSpectrogram + AmplitudeToDB, the
Hugging Face / original-repository CED forward passes) with numpy only, so it shares no
code with the Swift implementation. Weights and audio come from a 32-bit LCG that the
Swift test reproduces exactly, so the fixture only stores expected tensors.

Architecture: embed 48, 4 heads (head_dim 12), depth 2, mlp_ratio 3, qkv_bias false,
10 classes, target_length 100 frames (6 time patches per chunk). Audio: a 2.5 s synthetic
clip (251 frames = 2 full chunks + a 51-frame partial one) and a 0.09 s clip (10 frames,
below one 16-frame patch).

Run: python3 gen_independent_case.py  (writes independent_case.safetensors here)
"""
import json
import os
import struct

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


class LCG:
    """x <- 1664525 x + 1013904223 mod 2^32; uniform u = (x >> 8) / 2^24 in [0, 1)."""

    def __init__(self, seed):
        self.x = seed & 0xFFFFFFFF

    def uniform(self, n):
        out = np.empty(n, dtype=np.float64)
        x = self.x
        for i in range(n):
            x = (1664525 * x + 1013904223) & 0xFFFFFFFF
            out[i] = (x >> 8) / 16777216.0
        self.x = x
        return out

    def symmetric(self, n, scale):
        """(2u - 1) * scale, rounded to float32 as the Swift side computes it."""
        u = self.uniform(n).astype(np.float32)
        return ((np.float32(2) * u - np.float32(1)) * np.float32(scale)).astype(np.float32)


BASE_CONFIG = dict(embed_dim=48, depth=2, num_heads=4, mlp_ratio=3.0, qkv_bias=False, outputdim=10,
                   patch_size=16, patch_stride=16, target_length=100, n_mels=64, eval_avg="mean",
                   pad_last=True, pooling="mean")


def tensor_specs(cfg):
    """(name, shape, kind) in the order the LCG stream fills them."""
    C, H = cfg["embed_dim"], int(cfg["embed_dim"] * cfg["mlp_ratio"])
    F = cfg["n_mels"] // cfg["patch_stride"]
    T = cfg["target_length"] // cfg["patch_stride"]
    specs = [
        ("encoder.init_bn.weight", [64], "scale"), ("encoder.init_bn.bias", [64], "shift"),
        ("encoder.init_bn.running_mean", [64], "bn_mean"), ("encoder.init_bn.running_var", [64], "bn_var"),
        ("encoder.patch_embed.proj.weight", [C, 1, 16, 16], "w256"), ("encoder.patch_embed.proj.bias", [C], "bias"),
        ("encoder.time_pos_embed", [1, C, 1, T], "pos"), ("encoder.freq_pos_embed", [1, C, F, 1], "pos"),
    ]
    if cfg["pooling"] == "token":
        specs += [("encoder.cls_token", [1, 1, C], "pos"), ("encoder.token_pos_embed", [1, C], "pos")]
    for b in range(cfg["depth"]):
        p = f"encoder.blocks.{b}."
        specs += [
            (p + "norm1.weight", [C], "scale"), (p + "norm1.bias", [C], "shift"),
            (p + "attn.qkv.weight", [3 * C, C], "wqkv"),
            (p + "attn.proj.weight", [C, C], "w"), (p + "attn.proj.bias", [C], "bias"),
            (p + "norm2.weight", [C], "scale"), (p + "norm2.bias", [C], "shift"),
            (p + "mlp.fc1.weight", [H, C], "w"), (p + "mlp.fc1.bias", [H], "bias"),
            (p + "mlp.fc2.weight", [C, H], "w"), (p + "mlp.fc2.bias", [C], "bias"),
        ]
    specs += [
        ("encoder.norm.weight", [C], "scale"), ("encoder.norm.bias", [C], "shift"),
        ("outputlayer.0.weight", [C], "scale"), ("outputlayer.0.bias", [C], "shift"),
        ("outputlayer.1.weight", [cfg["outputdim"], C], "w"), ("outputlayer.1.bias", [cfg["outputdim"]], "bias"),
    ]
    return specs


def make_weights(cfg, seed):
    rng = LCG(seed)
    weights = {}
    for name, shape, kind in tensor_specs(cfg):
        n = int(np.prod(shape))
        fan_in = shape[-1] if len(shape) == 2 else 256
        if kind == "scale":
            v = (np.float32(1) + rng.symmetric(n, 0.3)).astype(np.float32)
        elif kind == "shift":
            v = rng.symmetric(n, 0.2)
        elif kind == "bn_mean":
            v = (np.float32(-40) + rng.symmetric(n, 10)).astype(np.float32)
        elif kind == "bn_var":
            v = (np.float32(250) + rng.symmetric(n, 100)).astype(np.float32)
        elif kind == "bias":
            v = rng.symmetric(n, 0.1)
        elif kind == "pos":
            v = rng.symmetric(n, 0.5)
        elif kind == "wqkv":
            v = rng.symmetric(n, 3.0 / np.sqrt(fan_in))
        else:  # w, w256
            v = rng.symmetric(n, 1.7 / np.sqrt(fan_in))
        weights[name] = v.reshape(shape)
    return weights


def make_audio(n, seed):
    """Chirp 200 -> 3000 Hz, a gated 1 kHz tone and LCG noise, float32."""
    t = np.arange(n, dtype=np.float64) / 16000.0
    dur = n / 16000.0
    chirp = 0.4 * np.sin(2 * np.pi * (200 * t + (3000 - 200) / (2 * max(dur, 1e-9)) * t * t))
    gate = (np.floor(t * 8) % 2 == 0).astype(np.float64)
    tone = 0.3 * gate * np.sin(2 * np.pi * 1000 * t)
    noise = LCG(seed).uniform(n) * 2 - 1
    return (chirp + tone + 0.05 * noise).astype(np.float32)


def mel_spectrogram(wave):
    x = wave.astype(np.float64)
    n_fft, hop, n_mels, sr = 512, 160, 64, 16000
    x = np.pad(x, (n_fft // 2, n_fft // 2), mode="reflect")
    frames = 1 + (len(x) - n_fft) // hop
    n = np.arange(n_fft)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
    idx = np.arange(n_fft)[None, :] + hop * np.arange(frames)[:, None]
    spec = np.fft.rfft(x[idx] * window, axis=1)
    power = spec.real ** 2 + spec.imag ** 2                      # [T, n_freqs]
    all_freqs = np.linspace(0, sr // 2, n_fft // 2 + 1)
    hz2mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)
    mel2hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    m_pts = np.linspace(hz2mel(0.0), hz2mel(8000.0), n_mels + 2)
    f_pts = mel2hz(m_pts)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - all_freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))                  # [n_freqs, n_mels]
    mel = (power @ fb).T                                         # [n_mels, T]
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db, db.max() - 120.0)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def erf(x):
    from math import erf as scalar_erf
    return np.vectorize(scalar_erf)(x)


def encoder(mel, cfg, W):
    """Returns (tokens [S, N, C], chunks S, freq patches, time patches per chunk)."""
    g = lambda k: W[k].astype(np.float64)
    C, heads = cfg["embed_dim"], cfg["num_heads"]
    L = cfg["target_length"]
    x = (mel - g("encoder.init_bn.running_mean")[:, None]) / np.sqrt(g("encoder.init_bn.running_var")[:, None] + 1e-5)
    x = x * g("encoder.init_bn.weight")[:, None] + g("encoder.init_bn.bias")[:, None]
    T = x.shape[1]
    if T <= L:
        chunks = [x]
        if T < 16:  # below one patch: zero-pad after BatchNorm to one patch (documented choice)
            chunks = [np.pad(x, ((0, 0), (0, 16 - T)))]
    else:
        chunks = [x[:, i:i + L] for i in range(0, T, L)]
        if chunks[-1].shape[1] < L:
            if cfg["pad_last"]:
                chunks[-1] = np.pad(chunks[-1], ((0, 0), (0, L - chunks[-1].shape[1])))
            else:
                chunks = chunks[:-1]
    pw = g("encoder.patch_embed.proj.weight").reshape(C, 256)
    pb = g("encoder.patch_embed.proj.bias")
    tpe = g("encoder.time_pos_embed")[0, :, 0, :]   # [C, Tmax]
    fpe = g("encoder.freq_pos_embed")[0, :, :, 0]   # [C, F]
    out = []
    for ch in chunks:
        Fp, Tp = 64 // 16, ch.shape[1] // 16
        toks = []
        for f in range(Fp):
            for t in range(Tp):
                patch = ch[f * 16:(f + 1) * 16, t * 16:(t + 1) * 16].reshape(256)
                toks.append(pw @ patch + pb + tpe[:, t] + fpe[:, f])
        h = np.array(toks)
        if cfg["pooling"] == "token":
            cls = g("encoder.cls_token")[0, 0] + g("encoder.token_pos_embed")[0]
            h = np.concatenate([cls[None, :], h], 0)
        for b in range(cfg["depth"]):
            p = f"encoder.blocks.{b}."
            y = layer_norm(h, g(p + "norm1.weight"), g(p + "norm1.bias"), 1e-6)
            qkv = y @ g(p + "attn.qkv.weight").T
            if cfg["qkv_bias"]:
                qkv = qkv + g(p + "attn.qkv.bias")
            N, d = h.shape[0], C // heads
            q, k, v = qkv[:, :C], qkv[:, C:2 * C], qkv[:, 2 * C:]
            ctx = np.zeros((N, C))
            for hd in range(heads):
                sl = slice(hd * d, (hd + 1) * d)
                s = q[:, sl] @ k[:, sl].T * d ** -0.5
                s = np.exp(s - s.max(1, keepdims=True))
                s /= s.sum(1, keepdims=True)
                ctx[:, sl] = s @ v[:, sl]
            h = h + ctx @ g(p + "attn.proj.weight").T + g(p + "attn.proj.bias")
            y = layer_norm(h, g(p + "norm2.weight"), g(p + "norm2.bias"), 1e-6)
            m = y @ g(p + "mlp.fc1.weight").T + g(p + "mlp.fc1.bias")
            m = 0.5 * m * (1 + erf(m / np.sqrt(2)))
            h = h + m @ g(p + "mlp.fc2.weight").T + g(p + "mlp.fc2.bias")
        h = layer_norm(h, g("encoder.norm.weight"), g("encoder.norm.bias"), 1e-6)
        out.append(h)
    Tp = chunks[0].shape[1] // 16
    return np.array(out), len(chunks), 64 // 16, Tp


def head(v, W):
    g = lambda k: W[k].astype(np.float64)
    y = layer_norm(v, g("outputlayer.0.weight"), g("outputlayer.0.bias"), 1e-5)
    return y @ g("outputlayer.1.weight").T + g("outputlayer.1.bias")


sigmoid = lambda z: 1 / (1 + np.exp(-z))


def outputs(mel, cfg, W):
    toks, S, Fp, Tp = encoder(mel, cfg, W)
    pool = cfg["pooling"]
    cls = 1 if pool == "token" else 0

    def chunk_vectors(s):
        body = toks[s, cls:]
        if pool == "token":
            return [toks[s, 0]]
        if pool in ("mean", "logit"):
            return [toks[s].mean(0)]
        grid = body.reshape(Fp, Tp, -1)                          # dm
        return list(grid.mean(0))

    act = (lambda z: z) if pool == "logit" else sigmoid
    per_chunk = np.array([np.mean([act(head(v, W)) for v in chunk_vectors(s)], 0) for s in range(S)])
    original = per_chunk.mean(0) if cfg["eval_avg"] == "mean" else per_chunk.max(0)
    if pool == "dm":
        hf = np.mean([sigmoid(head(v, W)) for s in range(S) for v in chunk_vectors(s)], 0)
    else:
        hf = act(head(np.mean([chunk_vectors(s)[0] for s in range(S)], 0), W))
    return toks.reshape(-1, toks.shape[-1]), hf, original, S


VARIANTS = {
    "mean": dict(), "logit": dict(pooling="logit"), "dm": dict(pooling="dm"), "token": dict(pooling="token"),
    "eval_avg-max": dict(eval_avg="max"), "pad_last-false": dict(pad_last=False),
}
AUDIO = {"clip": (40000, 7), "short": (1440, 11)}


def main():
    out = {}
    for aname, (n, seed) in AUDIO.items():
        wave = make_audio(n, seed)
        mel = mel_spectrogram(wave)
        out[f"{aname}/mel"] = mel
        for vname, change in VARIANTS.items():
            cfg = dict(BASE_CONFIG, **change)
            W = make_weights(cfg, seed=1234 if cfg["pooling"] != "token" else 4321)
            mel32 = mel.astype(np.float32).astype(np.float64)  # the model sees float32 features
            hidden, hf, orig, S = outputs(mel32, cfg, W)
            out[f"{aname}/{vname}/output_hf"] = hf
            out[f"{aname}/{vname}/output_original"] = orig
            out[f"{aname}/{vname}/chunks"] = np.array([S], dtype=np.float64)
            if vname == "mean":
                out[f"{aname}/{vname}/last_hidden_state"] = hidden
    write_safetensors(os.path.join(HERE, "independent_case.safetensors"), out)


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        blobs.append(a.tobytes())
        offset += a.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


if __name__ == "__main__":
    main()
