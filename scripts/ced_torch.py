#!/usr/bin/env python3
"""A PyTorch CED written from the upstream semantics, for checks and the training benchmark.

This is our own PyTorch model of CED (not the authors' file): the architecture of the
authors' `AudioTransformer` / the Hugging Face `CedForAudioClassification`, with parameters
named exactly as the Hugging Face checkpoints name them, so a `model.safetensors` loads with
`load_state_dict` and gradients come out keyed by those names. It exists to

* check itself against the shared training goldens (`verify`: output, loss, every gradient,
  BatchNorm statistics and AdamW trajectories of every case in train_cases.json), so that
  what it computes elsewhere can stand in for the authors' code;
* make training fixtures the goldens do not cover (`make-case`: another architecture, a
  frame count that is not a multiple of 16, other AdamW hyperparameters, dropout off);
* replay a `ced finetune` run on the same mels and targets (`replay`);
* be the PyTorch peer of the training benchmark (`bench`: one training step on 10 s log-mels,
  forward + loss + backward + AdamW, 2 threads, time per clip and peak RSS).

Needs torch (CPU) and numpy; safetensors are read with scripts/safetensors_np.py.
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import read_safetensors  # noqa: E402


# ---------------------------------------------------------------------------------------------
# The model

PRESETS = {"ced-tiny": (192, 3), "ced-mini": (256, 4), "ced-small": (384, 6), "ced-base": (768, 12)}


def load_config(path_or_dict):
    cfg = dict(path_or_dict) if isinstance(path_or_dict, dict) else json.load(open(path_or_dict))
    defaults = dict(embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0, qkv_bias=True, outputdim=527,
                    patch_size=16, patch_stride=16, pooling="mean", target_length=1012, n_mels=64,
                    drop_rate=0.0, attn_drop_rate=0.0, drop_path_rate=0.0)
    for k, v in defaults.items():
        cfg.setdefault(k, v)
    if cfg.get("name") in PRESETS:
        cfg["embed_dim"], cfg["num_heads"] = PRESETS[cfg["name"]]
    return cfg


def pair(v):
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias, attn_drop, proj_drop):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(x))


class Mlp(nn.Module):
    def __init__(self, dim, hidden, drop):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


def drop_path(x, p, training):
    if p == 0.0 or not training:
        return x
    keep = 1 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep if keep > 0 else x * mask


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias, drop, attn_drop, dpr):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias, attn_drop, drop)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop)
        self.dpr = dpr

    def forward(self, x):
        x = x + drop_path(self.attn(self.norm1(x)), self.dpr, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.dpr, self.training)


class PatchEmbed(nn.Module):
    def __init__(self, dim, size, stride):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=size, stride=stride)


class Encoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["embed_dim"]
        ps, st = pair(cfg["patch_size"]), pair(cfg["patch_stride"])
        self.pooling = cfg["pooling"]
        self.init_bn = nn.BatchNorm2d(cfg["n_mels"], momentum=0.01)
        self.patch_embed = PatchEmbed(c, ps, st)
        self.grid_f = cfg["n_mels"] // st[0]
        self.time_pos_embed = nn.Parameter(torch.randn(1, c, 1, cfg["target_length"] // st[1]) * 0.02)
        self.freq_pos_embed = nn.Parameter(torch.randn(1, c, self.grid_f, 1) * 0.02)
        if self.pooling == "token":
            self.cls_token = nn.Parameter(torch.zeros(1, 1, c))
            self.token_pos_embed = nn.Parameter(torch.randn(1, c) * 0.02)
        dpr = [x.item() for x in torch.linspace(0, cfg["drop_path_rate"], cfg["depth"])]
        self.pos_drop = nn.Dropout(cfg["drop_rate"])
        self.blocks = nn.Sequential(*[
            Block(c, cfg["num_heads"], cfg["mlp_ratio"], cfg["qkv_bias"], cfg["drop_rate"], cfg["attn_drop_rate"], dpr[i])
            for i in range(cfg["depth"])])
        self.norm = nn.LayerNorm(c, eps=1e-6)

    def forward(self, mel):
        x = mel.unsqueeze(1).permute(0, 2, 1, 3)                 # b 1 f t -> b f 1 t
        x = self.init_bn(x).permute(0, 2, 1, 3)                  # BatchNorm over mel bins
        x = self.patch_embed.proj(x)                             # b c f t
        t = x.shape[-1]
        x = x + self.time_pos_embed[:, :, :, :t] + self.freq_pos_embed
        x = x.flatten(2).transpose(1, 2)                         # b (f t) c
        if self.pooling == "token":
            cls = self.cls_token.expand(x.shape[0], -1, -1) + self.token_pos_embed
            x = torch.cat((cls, x), dim=1)
        x = self.pos_drop(x)
        return self.norm(self.blocks(x))


class CedTorch(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.outputlayer = nn.Sequential(nn.LayerNorm(cfg["embed_dim"]), nn.Linear(cfg["embed_dim"], cfg["outputdim"]))

    def logits(self, mel):
        """The head before the sigmoid (mean/token/logit pooling): what cross-entropy trains."""
        x = self.encoder(mel)
        return self.outputlayer(x[:, 0] if self.cfg["pooling"] == "token" else x.mean(1))

    def forward(self, mel):
        x = self.encoder(mel)
        p = self.cfg["pooling"]
        if p == "token":
            return self.outputlayer(x[:, 0]).sigmoid()
        if p == "mean":
            return self.outputlayer(x.mean(1)).sigmoid()
        if p == "logit":
            return self.outputlayer(x.mean(1))
        if p == "dm":
            b, n, c = x.shape
            x = x.reshape(b, self.encoder.grid_f, n // self.encoder.grid_f, c).mean(1)
            return self.outputlayer(x).sigmoid().mean(1)
        raise ValueError(p)

    def decay_groups(self, weight_decay):
        no_decay = {"encoder.time_pos_embed", "encoder.freq_pos_embed", "encoder.cls_token", "encoder.token_pos_embed"}
        decay, rest = [], []
        for name, p in self.named_parameters():
            (decay if p.ndim >= 2 and name not in no_decay else rest).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def load_model(model_dir, pooling=None):
    cfg = load_config(os.path.join(model_dir, "config.json"))
    if pooling:
        cfg["pooling"] = pooling
    model = CedTorch(cfg)
    sd = {k: torch.from_numpy(v) for k, v in read_safetensors(os.path.join(model_dir, "model.safetensors")).items()}
    own = model.state_dict()
    if "encoder.init_bn.num_batches_tracked" not in sd:
        sd["encoder.init_bn.num_batches_tracked"] = own["encoder.init_bn.num_batches_tracked"]
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()}, strict=True)
    return model


def criterion(name):
    if name == "bce":
        return nn.BCELoss()
    if name == "bce_with_logits":
        return nn.BCEWithLogitsLoss()
    if name == "cross_entropy":
        return lambda out, y: F.cross_entropy(out, y)
    raise ValueError(name)


# ---------------------------------------------------------------------------------------------
# safetensors writer (F32 / I64), enough for fixtures

def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dtype = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}[a.dtype]
        b = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------------------------------------
# A training case: forward, loss, gradients, BatchNorm statistics, AdamW steps

def step_loss(model, mel, targets, loss_name):
    """(output, loss): cross-entropy trains the head's logits, BCE the probabilities."""
    if loss_name == "cross_entropy":
        z = model.logits(mel)
        out = z.sigmoid() if model.cfg["pooling"] != "logit" else z
        return out, criterion(loss_name)(z, targets)
    pred = model(mel)
    return pred, criterion(loss_name)(pred, targets)


def run_case(model, mel, targets, loss_name, adamw=None, steps=0):
    """Everything a training golden holds, as numpy arrays keyed like train.safetensors."""
    out = {}
    model.train()
    pred, loss = step_loss(model, mel, targets, loss_name)
    loss.backward()
    out["output"] = pred.detach().numpy()
    out["loss"] = np.array([loss.item()], dtype=np.float32)
    for name, p in model.named_parameters():
        out["grad/" + name] = p.grad.detach().numpy().copy()
    for s in ("running_mean", "running_var"):
        out["after_forward/encoder.init_bn." + s] = getattr(model.encoder.init_bn, s).detach().numpy().copy()
    if steps:
        opt = torch.optim.AdamW(model.decay_groups(adamw["weight_decay"]), lr=adamw["lr"],
                                betas=tuple(adamw["betas"]), eps=adamw["eps"])
        losses = []
        for s in range(steps):
            if s > 0:
                opt.zero_grad(set_to_none=True)
                pred, loss = step_loss(model, mel, targets, loss_name)
                loss.backward()
            losses.append(loss.item())
            opt.step()
        out["adamw/losses"] = np.array(losses, dtype=np.float32)
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            out["adamw/final/" + name] = t.detach().numpy().copy()
        model.eval()
        with torch.no_grad():
            out["adamw/final_eval_output"] = model(mel).numpy()
    return out


def compare(name, got, want, tol, relative=False):
    d = float(np.max(np.abs(got.astype(np.float64) - want.astype(np.float64)))) if want.size else 0.0
    if relative:
        d /= max(float(np.max(np.abs(want))), 1e-30)
    ok = d <= tol
    return ok, f"{'ok ' if ok else 'BAD'} {name}: {d:.3g} (tol {tol:g})"


def verify(args):
    ref = args.reference
    cases = json.load(open(os.path.join(ref, "train_cases.json")))["cases"]
    golden = read_safetensors(os.path.join(ref, "golden/train.safetensors"))
    bad = 0
    for case in cases:
        torch.manual_seed(0)
        c = case["name"]
        model = load_model(os.path.join(ref, "models", case["model"]), case["pooling"])
        mel = torch.from_numpy(golden[f"{c}/input_mel"])
        y = torch.from_numpy(golden[f"{c}/targets"])
        got = run_case(model, mel, y, case["loss"], case.get("adamw"), case.get("adamw_steps", 0))
        lines = []
        for k, v in got.items():
            key = f"{c}/{k}"
            if key not in golden:
                continue
            if k.startswith("grad/"):
                ok, line = compare(k, v, golden[key], 1e-4, relative=True)
            elif k.startswith("after_forward/"):
                ok, line = compare(k, v, golden[key], 1e-3)
            elif k == "output":
                ok, line = compare(k, v, golden[key], 1e-5)
            elif k == "loss":
                ok, line = compare(k, v, golden[key], 1e-6)
            elif k == "adamw/losses":
                ok, line = compare(k, v, golden[key], 1e-5)
            elif k == "adamw/final_eval_output":
                ok, line = compare(k, v, golden[key], 1e-4)
            else:
                ok, line = compare(k, v, golden[key], 2e-4)
            bad += not ok
            if not ok or args.verbose:
                lines.append("  " + line)
        print(f"{c}: {'all match' if not lines or args.verbose else 'MISMATCH'}")
        for line in lines:
            print(line)
    print("verify:", "every case matches the goldens" if bad == 0 else f"{bad} mismatches")
    return 0 if bad == 0 else 1


# ---------------------------------------------------------------------------------------------
# Fixtures outside the goldens

def make_case(args):
    """A training fixture in the train.safetensors format for an architecture of our own."""
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = load_config(dict(embed_dim=args.embed, depth=args.depth, num_heads=args.heads, mlp_ratio=args.mlp_ratio,
                           qkv_bias=not args.no_qkv_bias, outputdim=args.classes, target_length=args.target_length,
                           pooling=args.pooling, patch_size=args.patch_size, patch_stride=args.patch_stride))
    model = CedTorch(cfg)
    # Every parameter matters: scales away from 1, biases away from 0, peaky attention.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight") or name.endswith("norm.weight") \
                    or name in ("outputlayer.0.weight", "encoder.init_bn.weight"):
                p.copy_(torch.from_numpy(rng.uniform(0.7, 1.3, p.shape).astype(np.float32)))
            elif name.endswith(".bias"):
                p.copy_(torch.from_numpy(rng.normal(0, 0.1, p.shape).astype(np.float32)))
            elif "pos_embed" in name or "cls_token" in name:
                p.copy_(torch.from_numpy(rng.normal(0, 0.5, p.shape).astype(np.float32)))
            elif p.ndim >= 2:
                fan_in = int(np.prod(p.shape[1:]))
                scale = 2.0 if "qkv" in name else 1.0
                p.copy_(torch.from_numpy(rng.normal(0, scale / math.sqrt(fan_in), p.shape).astype(np.float32)))
        model.encoder.init_bn.running_mean.copy_(torch.from_numpy(rng.uniform(-60, -20, cfg["n_mels"]).astype(np.float32)))
        model.encoder.init_bn.running_var.copy_(torch.from_numpy(rng.uniform(100, 400, cfg["n_mels"]).astype(np.float32)))
    weights = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    mel = torch.from_numpy((rng.normal(-45, 15, (args.batch, cfg["n_mels"], args.frames))).astype(np.float32))
    y = torch.from_numpy(rng.uniform(0, 1, (args.batch, cfg["outputdim"])).astype(np.float32))
    if args.loss == "cross_entropy":
        y = (y / y.sum(1, keepdim=True)).float()
    adamw = dict(lr=args.lr, betas=[args.beta1, args.beta2], eps=args.eps, weight_decay=args.weight_decay)
    # The expected values are computed in float64 from the float32 inputs (as the shared
    # goldens' tolerances were measured), so float32 rounding noise of either side (e.g.
    # in the key bias, whose true gradient is 0) is not baked into the fixture.
    got = run_case(model.double(), mel.double(), y.double(), args.loss, adamw, args.steps)
    got = {k: v.astype(np.float32) for k, v in got.items()}
    name = args.name
    tensors = {f"{name}/input_mel": mel.numpy(), f"{name}/targets": y.numpy()}
    tensors.update({f"{name}/{k}": v for k, v in got.items()})
    tensors.update({f"{name}/weights/{k}": v for k, v in weights.items()})
    write_safetensors(args.out, tensors, {"config": json.dumps(cfg, sort_keys=True),
                                          "case": json.dumps(dict(name=name, pooling=cfg["pooling"], loss=args.loss,
                                                                  frames=args.frames, adamw_steps=args.steps,
                                                                  adamw=adamw), sort_keys=True)})
    print(f"wrote {args.out}: {len(tensors)} tensors, loss {got['loss'][0]:.6f}")


def log_mel(wave, sr=16000, n_fft=512, hop=160, n_mels=64, f_min=0.0, f_max=8000.0, top_db=120.0):
    """torchaudio's MelSpectrogram (center, reflect, power 2, periodic Hann, HTK mel, no
    norm) + AmplitudeToDB(top_db), written out with torch.stft: [n_mels, T]."""
    x = torch.as_tensor(wave, dtype=torch.float32)
    spec = torch.stft(x, n_fft, hop_length=hop, win_length=n_fft, window=torch.hann_window(n_fft), center=True,
                      pad_mode="reflect", return_complex=True).abs() ** 2
    n_freqs = n_fft // 2 + 1
    all_freqs = torch.linspace(0, sr // 2, n_freqs)
    m_min, m_max = 2595.0 * math.log10(1.0 + f_min / 700.0), 2595.0 * math.log10(1.0 + f_max / 700.0)
    m_pts = torch.linspace(m_min, m_max, n_mels + 2)
    f_pts = 700.0 * (10 ** (m_pts / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts.unsqueeze(0) - all_freqs.unsqueeze(1)
    down = (-1.0 * slopes[:, :-2]) / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = torch.max(torch.zeros(1), torch.min(down, up))
    mel = torch.matmul(spec.transpose(-1, -2), fb).transpose(-1, -2)
    db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))
    return torch.max(db, db.max() - top_db)


def read_wav(path):
    import wave as wavmod
    with wavmod.open(path, "rb") as w:
        assert w.getsampwidth() == 2 and w.getframerate() == 16000, "replay-csv reads 16 kHz 16-bit WAV"
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
        return data.reshape(-1, w.getnchannels()).mean(1)


def replay_csv(args):
    """`ced finetune --data CSV --multi-label --val-split 0 --no-augment --schedule constant
    --warmup 0` with one batch holding every clip (batch size ≥ clips): the authors' recipe
    (train-mode forward, BCE on the pooling's output, torch.optim.AdamW) on mels computed
    here from the WAVs. Prints JSON: the loss of every step, and the trained model's
    eval-mode output for every clip."""
    model = load_model(args.model)
    label2id = model.cfg.get("label2id") or {v: int(k) for k, v in model.cfg["id2label"].items()}
    base = os.path.dirname(os.path.abspath(args.csv))
    rows = [l.strip().split(",") for l in open(args.csv) if l.strip()]
    if rows and rows[0][0] in ("file", "filename", "path"):
        rows = rows[1:]
    waves = [read_wav(os.path.join(base, r[0])) for r in rows]
    longest = max(len(w) for w in waves)
    mels = torch.stack([log_mel(np.pad(w, (0, longest - len(w)))) for w in waves])
    y = torch.zeros(len(rows), model.cfg["outputdim"])
    for i, r in enumerate(rows):
        for l in r[1].split(";"):
            y[i, label2id[l.strip()]] = 1
    loss_name = "bce_with_logits" if model.cfg["pooling"] == "logit" else "bce"
    opt = torch.optim.AdamW(model.decay_groups(args.weight_decay), lr=args.lr)
    losses = []
    for _ in range(args.epochs):
        model.train()
        opt.zero_grad(set_to_none=True)
        loss = criterion(loss_name)(model(mels), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        outs = [model(log_mel(w).unsqueeze(0))[0].tolist() for w in waves]
    print(json.dumps({"losses": losses, "eval_output": outs}))


def replay(args):
    """AdamW on fixed mels and targets, as `ced finetune --no-augment` trains on one batch per step.

    `--batches` is a safetensors file with `mel/<step>` `[B, 64, T]` and `targets/<step>`; the
    model's own head and classes are kept. Prints JSON: losses per step, the trained model's
    eval-mode outputs on `eval_mel` when given."""
    model = load_model(args.model)
    data = read_safetensors(args.batches)
    steps = sorted(int(k.split("/")[1]) for k in data if k.startswith("mel/"))
    opt = torch.optim.AdamW(model.decay_groups(args.weight_decay), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    loss_name = args.loss or ("bce_with_logits" if model.cfg["pooling"] == "logit" else "bce")
    losses = []
    for s in steps:
        model.train()
        opt.zero_grad(set_to_none=True)
        pred = model(torch.from_numpy(data[f"mel/{s}"]))
        loss = criterion(loss_name)(pred, torch.from_numpy(data[f"targets/{s}"]))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    result = {"losses": losses}
    if "eval_mel" in data:
        model.eval()
        with torch.no_grad():
            result["eval_output"] = model(torch.from_numpy(data["eval_mel"])).numpy().tolist()
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# Training benchmark (the PyTorch peer)

def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench(args):
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(dict(name=f"ced-{args.model}", depth=12, outputdim=527, pooling="logit"))
    model = CedTorch(cfg).train()
    opt = torch.optim.AdamW(model.decay_groups(0.05), lr=1e-4)
    crit = nn.BCEWithLogitsLoss()
    rng = np.random.default_rng(1)
    mel = torch.from_numpy(rng.normal(-45, 15, (args.batch, 64, args.frames)).astype(np.float32))
    y = torch.from_numpy((rng.uniform(0, 1, (args.batch, 527)) < 0.02).astype(np.float32))
    times = []
    for i in range(args.warmup + args.runs):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = crit(model(mel), y)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
    times.sort()
    result = dict(model=args.model, batch=args.batch, frames=args.frames, threads=args.threads,
                  torch=torch.__version__, best_ms_per_step=1000 * times[0],
                  median_ms_per_step=1000 * times[len(times) // 2],
                  best_ms_per_clip=1000 * times[0] / args.batch,
                  median_ms_per_clip=1000 * times[len(times) // 2] / args.batch,
                  peak_rss_mb=peak_rss_mb())
    print(json.dumps(result))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("verify", help="check this model against the shared training goldens")
    v.add_argument("--reference", default=os.path.join(os.path.dirname(__file__), "../../shared/reference"))
    v.add_argument("--verbose", action="store_true")
    m = sub.add_parser("make-case", help="write a training fixture for an architecture of our own")
    m.add_argument("--name", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--embed", type=int, default=96)
    m.add_argument("--depth", type=int, default=3)
    m.add_argument("--heads", type=int, default=3)
    m.add_argument("--mlp-ratio", type=float, default=2.5)
    m.add_argument("--no-qkv-bias", action="store_true")
    m.add_argument("--classes", type=int, default=10)
    m.add_argument("--target-length", type=int, default=600)
    m.add_argument("--patch-size", type=int, default=16)
    m.add_argument("--patch-stride", type=int, default=16)
    m.add_argument("--pooling", default="token")
    m.add_argument("--loss", default="bce")
    m.add_argument("--frames", type=int, default=437)
    m.add_argument("--batch", type=int, default=3)
    m.add_argument("--steps", type=int, default=3)
    m.add_argument("--lr", type=float, default=3e-3)
    m.add_argument("--beta1", type=float, default=0.8)
    m.add_argument("--beta2", type=float, default=0.95)
    m.add_argument("--eps", type=float, default=1e-7)
    m.add_argument("--weight-decay", type=float, default=0.1)
    m.add_argument("--seed", type=int, default=7)
    r = sub.add_parser("replay", help="AdamW on fixed batches, as ced finetune --no-augment")
    r.add_argument("--model", required=True)
    r.add_argument("--batches", required=True)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--weight-decay", type=float, default=0.05)
    r.add_argument("--loss")
    rc = sub.add_parser("replay-csv", help="the fine-tuning trajectory of a CSV of WAVs, in PyTorch")
    rc.add_argument("--model", required=True)
    rc.add_argument("--csv", required=True)
    rc.add_argument("--epochs", type=int, default=5)
    rc.add_argument("--lr", type=float, default=1e-3)
    rc.add_argument("--weight-decay", type=float, default=0.05)
    b = sub.add_parser("bench", help="time one training step (the PyTorch peer)")
    b.add_argument("--model", default="tiny")
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--frames", type=int, default=1001)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--runs", type=int, default=5)
    b.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    return {"verify": verify, "make-case": make_case, "replay": replay, "replay-csv": replay_csv,
            "bench": bench}[args.cmd](args) or 0


if __name__ == "__main__":
    sys.exit(main())
