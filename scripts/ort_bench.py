#!/usr/bin/env python3
"""ONNX Runtime side of the CED benchmark (run by scripts/bench.sh).

Reads what `ced bench --export DIR` wrote (the clip's mel, the models, Swift's probabilities
on that mel) and times ONNX Runtime mel -> probabilities on the same mel, batch 1:

* tiny: the authors' export in ../shared/reference/onnx (tiny.onnx, tiny.int8.onnx), the
  figures the issue quotes; plus our own graph of the same weights as a cross-check.
* every size: a CED graph built here with the `onnx` package from the same weights the
  Swift side used (BatchNormalization, Conv, LayerNormalization, MatMul/Add, Softmax, Erf
  GELU, Sigmoid: what the authors' export computes), verified against Swift's probabilities
  (max abs difference <= 1e-4) before it is timed, and its int8 twin made with
  onnxruntime.quantization.quantize_dynamic (QInt8 weights, per tensor: how tiny.int8.onnx
  was made).

ONNX Runtime runs with intra_op_num_threads = --threads (2: both cores, as the Swift side),
inter_op_num_threads = 1, sequential execution, all graph optimisations.

Prints each figure and, with --swift (the JSON of `ced bench --format json`), the ratio
Swift / ORT; writes everything as JSON to --out.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from safetensors_np import read_safetensors  # noqa: E402

TOLERANCE = 1e-4


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# The CED graph


class GraphBuilder:
    def __init__(self):
        self.nodes, self.inits, self.count = [], [], 0

    def name(self, hint):
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, hint, array):
        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(array), n))
        return n

    def op(self, op_type, inputs, hint=None, **attrs):
        out = self.name(hint or op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def linear(self, x, weights, prefix):
        w = self.const(prefix + ".weight_t", weights[prefix + ".weight"].T.astype(np.float32))
        y = self.op("MatMul", [x, w])
        if prefix + ".bias" in weights:
            y = self.op("Add", [y, self.const(prefix + ".bias", weights[prefix + ".bias"])])
        return y

    def layer_norm(self, x, weights, prefix, eps):
        return self.op("LayerNormalization", [x, self.const(prefix + ".weight", weights[prefix + ".weight"]),
                                              self.const(prefix + ".bias", weights[prefix + ".bias"])],
                       axis=-1, epsilon=eps)


def build_ced(config, weights, path):
    """Writes the CED classification graph (mean pooling, T <= target_length) for Hugging
    Face-named `weights` to `path`: input `feats` [B, n_mels, T], output `prob` [B, outputdim]."""
    assert config.get("pooling", "mean") == "mean", "only mean pooling is built"
    e, heads = config["embed_dim"], config["num_heads"]
    d = e // heads
    g = GraphBuilder()
    w = {k: v for k, v in weights.items() if not k.endswith("num_batches_tracked")}
    p = "encoder."
    x = g.op("BatchNormalization", ["feats"] + [g.const("bn." + s, w[p + "init_bn." + s])
                                                for s in ("weight", "bias", "running_mean", "running_var")], epsilon=1e-5)
    x = g.op("Unsqueeze", [x, g.const("axes", np.array([1], np.int64))])
    pw = w[p + "patch_embed.proj.weight"]
    x = g.op("Conv", [x, g.const("patch.weight", pw), g.const("patch.bias", w[p + "patch_embed.proj.bias"])],
             kernel_shape=list(pw.shape[2:]), strides=[config["patch_stride"]] * 2 if isinstance(config["patch_stride"], int)
             else list(config["patch_stride"]))
    # time_pos_embed[..., :T'] + freq_pos_embed
    t_len = g.op("Slice", [g.op("Shape", [x]), g.const("i3", np.array([3], np.int64)), g.const("i4", np.array([4], np.int64))])
    tpos = g.op("Slice", [g.const("time_pos", w[p + "time_pos_embed"]), g.const("zero", np.array([0], np.int64)), t_len,
                          g.const("axis3", np.array([3], np.int64))])
    x = g.op("Add", [g.op("Add", [x, tpos]), g.const("freq_pos", w[p + "freq_pos_embed"])])
    # b c f t -> b (f t) c
    x = g.op("Reshape", [g.op("Transpose", [x], perm=[0, 2, 3, 1]), g.const("shape", np.array([0, -1, e], np.int64))])
    scale = g.const("scale", np.array(d ** -0.5, np.float32))
    half, one, sqrt2 = (g.const(n, np.array(v, np.float32)) for n, v in (("half", 0.5), ("one", 1.0), ("sqrt2", 2 ** 0.5)))
    for i in range(config["depth"]):
        b = f"{p}blocks.{i}."
        h = g.layer_norm(x, w, b + "norm1", 1e-6)
        qkv = g.linear(h, w, b + "attn.qkv")
        qkv = g.op("Transpose", [g.op("Reshape", [qkv, g.const("qkv_shape", np.array([0, 0, 3, heads, d], np.int64))])],
                   perm=[2, 0, 3, 1, 4])  # [3, B, H, N, D]
        q, k, v = (g.op("Gather", [qkv, g.const("idx", np.array(j, np.int64))], axis=0) for j in range(3))
        s = g.op("Mul", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])]), scale])
        a = g.op("Softmax", [s], axis=-1)
        o = g.op("Transpose", [g.op("MatMul", [a, v])], perm=[0, 2, 1, 3])
        o = g.op("Reshape", [o, g.const("merge", np.array([0, 0, e], np.int64))])
        x = g.op("Add", [x, g.linear(o, w, b + "attn.proj")])
        h = g.linear(g.layer_norm(x, w, b + "norm2", 1e-6), w, b + "mlp.fc1")
        h = g.op("Mul", [g.op("Mul", [h, g.op("Add", [g.op("Erf", [g.op("Div", [h, sqrt2])]), one])]), half])
        x = g.op("Add", [x, g.linear(h, w, b + "mlp.fc2")])
    x = g.layer_norm(x, w, p + "norm", 1e-6)
    x = g.op("ReduceMean", [x], axes=[1], keepdims=0)
    x = g.linear(g.layer_norm(x, w, "outputlayer.0", 1e-5), w, "outputlayer.1")
    g.nodes.append(helper.make_node("Sigmoid", [x], ["prob"]))
    graph = helper.make_graph(
        g.nodes, "ced",
        [helper.make_tensor_value_info("feats", TensorProto.FLOAT, ["batch_size", config.get("n_mels", 64), "time_dim"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["batch_size", config.get("outputdim", 527)])],
        g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ced-swift scripts/ort_bench.py")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)


def quantize_int8(src, dst):
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic
    logging.getLogger().setLevel(logging.ERROR)  # its advice to pre-process does not apply here
    quantize_dynamic(src, dst, weight_type=QuantType.QInt8)


# ---------------------------------------------------------------------------------------------
# Timing


def session(path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def peak_rss_mb(path, threads, export):
    """Peak RSS of a fresh Python process that loads `path` into an ORT session and runs it
    once on the export's mel: ONNX Runtime's side of `ced tag`'s peak memory."""
    code = (
        "import os, sys; sys.path.insert(0, %r)\n"
        "import numpy as np, onnxruntime as ort\n"
        "from safetensors_np import read_safetensors\n"
        "o = ort.SessionOptions(); o.intra_op_num_threads = %d; o.inter_op_num_threads = 1\n"
        "s = ort.InferenceSession(%r, o, providers=['CPUExecutionProvider'])\n"
        "mel = read_safetensors(os.path.join(%r, 'mel.safetensors'))['mel'][None].astype(np.float32)\n"
        "s.run(['prob'], {'feats': mel})\n"
    ) % (os.path.dirname(os.path.abspath(__file__)), threads, path, export)
    child = subprocess.Popen([sys.executable, "-c", code])
    _, status, usage = os.wait4(child.pid, 0)
    if status != 0:
        return None
    return round(usage.ru_maxrss / 1024, 1)


def time_session(sess, feats, warmup, runs):
    feed = {"feats": feats}
    for _ in range(warmup):
        sess.run(["prob"], feed)
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(["prob"], feed)
        samples.append((time.perf_counter() - t0) * 1e3)
    return {"best_ms": round(min(samples), 3), "median_ms": round(float(np.median(samples)), 3),
            "mean_ms": round(float(np.mean(samples)), 3), "runs": runs}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--export", required=True, help="directory written by `ced bench --export`")
    ap.add_argument("--reference-onnx", default=None, help="folder with the authors' tiny.onnx and tiny.int8.onnx")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/ced-bench/onnx"), help="where generated ONNX models are kept")
    ap.add_argument("--models", default=None, help="comma-separated sizes of the manifest to time (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--swift", help="JSON of `ced bench --format json`, for the ratios")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    manifest = json.load(open(os.path.join(args.export, "manifest.json")))
    mel = read_safetensors(os.path.join(args.export, manifest["mel"]))["mel"]
    feats = mel[None].astype(np.float32)  # [1, 64, T]
    swift_probs = read_safetensors(os.path.join(args.export, manifest["probs"]))
    os.makedirs(args.cache, exist_ok=True)
    swift = None
    if args.swift:
        swift = {(r["model"], r["precision"]): r for r in json.load(open(args.swift))["results"]}

    result = {"onnxruntime": ort.__version__, "onnx": onnx.__version__, "threads": args.threads,
              "session": {"intra_op_num_threads": args.threads, "inter_op_num_threads": 1,
                          "execution_mode": "sequential", "graph_optimization_level": "all"},
              "runs": args.runs, "warmup": args.warmup, "frames": int(mel.shape[1]), "models": {}}

    def log(*a):
        print(*a, flush=True)

    log(f"ONNX Runtime {ort.__version__}, {args.threads} intra-op threads, mel [1, {mel.shape[0]}, {mel.shape[1]}], "
        f"best/median of {args.runs} runs after {args.warmup} warm-up")
    wanted = set(args.models.split(",")) if args.models else None
    for size, info in manifest["models"].items():
        if wanted is not None and size not in wanted:
            continue
        entry = result["models"].setdefault(size, {})
        weights_path = os.path.join(info["dir"], "model.safetensors")
        config = json.load(open(os.path.join(info["dir"], "config.json")))
        digest = file_digest(weights_path)
        ours = os.path.join(args.cache, f"ced-{size}-{digest}.onnx")
        ours8 = os.path.join(args.cache, f"ced-{size}-{digest}.int8.onnx")
        if not os.path.exists(ours):
            log(f"  building {os.path.basename(ours)}")
            build_ced(config, read_safetensors(weights_path), ours + ".tmp")
            os.replace(ours + ".tmp", ours)
        if not os.path.exists(ours8):
            quantize_int8(ours, ours8 + ".tmp.onnx")
            os.replace(ours8 + ".tmp.onnx", ours8)

        variants = []  # (key, path, description)
        if size == "tiny" and args.reference_onnx and info.get("fixture"):
            variants += [("fp32", os.path.join(args.reference_onnx, "tiny.onnx"), "authors' export (tiny.onnx)"),
                         ("int8", os.path.join(args.reference_onnx, "tiny.int8.onnx"), "authors' export (tiny.int8.onnx)"),
                         ("fp32_our_graph", ours, "graph built by ort_bench.py, same weights"),
                         ("int8_our_graph", ours8, "quantize_dynamic of our graph")]
        else:
            variants += [("fp32", ours, "graph built by ort_bench.py from the Swift bench's weights"),
                         ("int8", ours8, "quantize_dynamic(QInt8) of that graph")]
        ref = swift_probs.get(f"{size}/fp32")
        fp32_out = None
        for key, path, what in variants:
            sess = session(path, args.threads)
            out = sess.run(["prob"], {"feats": feats})[0][0]
            fig = {"file": path, "what": what}
            if ref is not None:
                fig["max_abs_diff_vs_swift_fp32"] = float(np.abs(out.astype(np.float64) - ref).max())
            if key.startswith("fp32"):
                fp32_out = out if key == "fp32" else fp32_out
                if ref is not None:
                    fig["verified"] = fig["max_abs_diff_vs_swift_fp32"] <= TOLERANCE
            elif fp32_out is not None:
                fig["max_abs_prob_error_vs_ort_fp32"] = float(np.abs(out.astype(np.float64) - fp32_out).max())
                fig["top5_same_as_fp32"] = bool((np.argsort(-out)[:5] == np.argsort(-fp32_out)[:5]).all())
            fig.update(time_session(sess, feats, args.warmup, args.runs))
            fig["peak_rss_mb"] = peak_rss_mb(path, args.threads, args.export)
            entry[key] = fig
            note = ""
            if "max_abs_diff_vs_swift_fp32" in fig:
                note += f"  |Δp| vs Swift fp32 {fig['max_abs_diff_vs_swift_fp32']:.2g}"
                if "verified" in fig:
                    note += " (ok)" if fig["verified"] else f" (EXCEEDS {TOLERANCE:g}: not the same computation)"
            log(f"  {size:5} ORT {key:15} best {fig['best_ms']:8.2f} ms  median {fig['median_ms']:8.2f} ms  "
                f"peak RSS {fig['peak_rss_mb']} MB{note}")
        if swift:
            for p in ("fp32", "bf16"):
                r = swift.get((size, p))
                if not r:
                    continue
                s = r["mel_to_probs"]["best_ms"]
                ratios = "  ".join(f"/ ORT {k} = {s / entry[k]['best_ms']:.2f}" for k in ("fp32", "int8") if k in entry)
                log(f"  {size:5} Swift {p:13} best {s:8.2f} ms  {ratios}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
    bad = [s for s, e in result["models"].items() for k, v in e.items() if v.get("verified") is False]
    if bad:
        log(f"WARNING: generated ONNX graphs of {', '.join(sorted(set(bad)))} differ from Swift by more than {TOLERANCE:g}")
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
