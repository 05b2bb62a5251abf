#!/usr/bin/env python3
"""A logit store of any size written from its documented format alone (no teachers, no
audio files): store.json, version-2 shards and their audio packs, with random views and
random audio. Then, optionally, what `ced distill` costs on it: the CPU time to read
it (`ced distill info`, which streams every byte into the digest), its size on disk, and the
peak RSS of one training epoch (`/usr/bin/time -v`), beside the same numbers for a small
store, in one run.

    scripts/logit_store_scale.py --items 2000000 --epochs 40 --topk 20 --shards 40 \
        --output /work/tmp/as-store --measure --small 600

Times are CPU seconds (user + system): on a shared machine wall time says little.
AudioSet's shape is 2 M items x 40 epochs x top 20 over 527 classes. The items' audio is
short (--seconds, default 0.2 s) so that a pack of 2 M items fits on a disk and one epoch
of a micro student runs in minutes: the store's part of the memory (what scales with the
item count) is what is measured; the audio packs are read by offset like the store.
"""
import argparse, hashlib, json, os, resource, shutil, struct, subprocess, sys, time

import numpy as np

CED = os.environ.get("CED", os.path.join(os.path.dirname(__file__), "..", ".build", "release", "ced"))


def header(specs, metadata, minimum=0):
    """Safetensors header bytes (length prefix included) for tensors laid out in order."""
    items, offset = [], 0
    if metadata:
        items.append(("__metadata__", metadata))
    for name, dtype, shape, nbytes in specs:
        items.append((name, {"data_offsets": [offset, offset + nbytes], "dtype": dtype, "shape": shape}))
        offset += nbytes
    body = json.dumps(dict(sorted(items)), separators=(",", ":"), sort_keys=True).encode()
    while len(body) < minimum or len(body) % 8:
        body += b" "
    return struct.pack("<Q", len(body)) + body


def write_shard(directory, i, n, items, epochs, topk, classes, seconds, sr, rng):
    """Shard i of n: `items` items (file k of the shard is global file k*n + i), then its pack."""
    m = len(items)
    paths = [p.encode() for p in items]
    offsets = np.zeros(m + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p) for p in paths])
    blob = b"".join(paths)
    nsamp = int(round(seconds * sr))
    starts = np.zeros(m, dtype=np.int64)
    ends = np.full(m, nsamp, dtype=np.int64)
    sha = rng.integers(0, 256, size=(m, 32), dtype=np.uint8)
    specs = [("seeds", "U32", [epochs, m], 4 * epochs * m),
             ("indices", "U16", [epochs, m, topk], 2 * epochs * m * topk),
             ("values", "F16", [epochs, m, topk], 2 * epochs * m * topk),
             ("item_start", "I64", [m], 8 * m), ("item_end", "I64", [m], 8 * m),
             ("item_sha256", "U8", [m, 32], 32 * m), ("item_path_offsets", "I64", [m + 1], 8 * (m + 1)),
             ("item_path", "U8", [len(blob)], len(blob))]
    meta = {"format": "ced-logit-store 2", "shard": f"{i}/{n}", "audio_bytes": str(2 * nsamp * m)}
    name = os.path.join(directory, f"logits-{i:05d}-of-{n:05d}.safetensors")
    with open(name + ".tmp", "wb") as f:
        f.write(header(specs, meta))
        for e in range(epochs):
            f.write(rng.integers(0, 2**32, size=m, dtype=np.uint32).tobytes())
        # One random block of views per shard, rolled by epoch and position: the reading cost
        # does not depend on the values, and generating 2 M x 40 x 20 fresh ones takes long.
        block = min(m, 65536)
        base = rng.integers(0, classes, size=(block, 1))
        idx_block = ((base + np.arange(topk)) % classes).astype(np.uint16)    # K distinct classes
        val_block = np.sort(rng.random((block, topk), dtype=np.float32), axis=1)[:, ::-1].astype(np.float16)
        for blk in (idx_block, val_block):
            for e in range(epochs):
                rolled = np.roll(blk, e, axis=0)
                for a in range(0, m, block):
                    f.write(rolled[: min(m, a + block) - a].tobytes())
        f.write(starts.tobytes()); f.write(ends.tobytes()); f.write(sha.tobytes()); f.write(offsets.tobytes()); f.write(blob)
    os.replace(name + ".tmp", name)
    # The pack: item j's samples at audio[offsets[j]:offsets[j+1]].
    h = hashlib.sha256()
    for j in range(m):
        h.update(paths[j] + b"\n" + sha[j].tobytes().hex().encode() + f"\n{starts[j]}\n{ends[j]}\n".encode())
    items_digest = h.hexdigest()
    aoff = np.arange(m + 1, dtype=np.int64) * nsamp
    pname = os.path.join(directory, f"audio-{i:05d}-of-{n:05d}.safetensors")
    audio_hash = hashlib.sha256()
    with open(pname + ".tmp", "wb") as f:
        specs = [("audio", "I16", [nsamp * m], 2 * nsamp * m), ("offsets", "I64", [m + 1], 8 * (m + 1))]
        hex0 = "0" * 64
        proto = {"format": "ced-audio-pack 1", "shard": f"{i}/{n}", "sample_rate": str(sr), "items_sha256": hex0,
                 "audio_sha256": hex0, "clipped": "0" * 15}
        room = len(header(specs, proto))
        f.write(b"\0" * room)
        noise = (rng.standard_normal(4096 * nsamp) * 3000).clip(-32767, 32767).astype(np.int16)
        for a in range(0, m, 4096):
            pcm = np.roll(noise, a)[: (min(m, a + 4096) - a) * nsamp].tobytes()
            audio_hash.update(pcm)
            f.write(pcm)
        f.write(aoff.tobytes())
        meta = dict(proto, items_sha256=items_digest, audio_sha256=audio_hash.hexdigest())
        h = header(specs, meta, minimum=room - 8)
        assert len(h) == room, (len(h), room)
        f.seek(0)
        f.write(h)
    os.replace(pname + ".tmp", pname)


def make_store(directory, n_items, epochs, topk, shards, classes, seconds, seed):
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    sr = 16000
    meta = {
        "format": "ced-logit-store", "version": 2, "classes": [f"class {c}" for c in range(classes)],
        "teachers": [{"source": "generated", "weights": "0000000000000000", "embed_dim": 768, "depth": 12, "num_heads": 12, "pooling": "mean"}],
        "feature_extractor": {"center": True, "f_max": None, "f_min": 0, "feature_size": 64, "hop_size": 160, "n_fft": 512,
                              "sampling_rate": sr, "win_size": 512},
        "augmentation": {"shift": 0.5, "shift_p": 0.5, "time_mask": 192, "freq_mask": 24, "time_mask_reference_frames": 1001,
                         "mask_values": "shared", "generator": "generated: random seeds"},
        "seed": seed, "topk": topk, "chunk_length": seconds, "epochs": epochs, "precision": "fp32", "shards": shards,
    }
    with open(os.path.join(directory, "store.json"), "w") as f:
        json.dump(meta, f, indent=2, sort_keys=True)
    rng = np.random.default_rng(seed)
    names = [f"clips/{k:08d}.wav" for k in range(n_items)]          # sorted; one item per file
    for i in range(shards):
        write_shard(directory, i, shards, names[i::shards], epochs, topk, classes, seconds, sr, rng)


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def measure(store, work):
    """CPU seconds to read the whole store (ced distill info: every view into the digest),
    bytes on disk, and one training epoch's peak RSS and CPU seconds."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    info = subprocess.run([CED, "distill", "info", store, "--format", "json"], check=True, capture_output=True, text=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    read_s = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)     # CPU seconds: wall time on a shared machine says little
    student = os.path.join(work, "micro.json")
    with open(student, "w") as f:
        json.dump({"embed_dim": 64, "depth": 2, "num_heads": 2, "pooling": "mean"}, f)
    out = os.path.join(work, "student-" + os.path.basename(store))
    shutil.rmtree(out, ignore_errors=True)
    cmd = ["/usr/bin/time", "-v", CED, "distill", "train", "--logits", store, "--student", student, "--output", out,
           "--epochs", "1", "--batch-size", "32", "--audio", "pack", "--quiet", "--data-root", work]
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(r.stderr)
    rss = next(int(l.split()[-1]) for l in r.stderr.splitlines() if "Maximum resident set size" in l)
    cpu = sum(float(l.split()[-1]) for l in r.stderr.splitlines() if "time (seconds)" in l and ("User" in l or "System" in l))
    shutil.rmtree(out, ignore_errors=True)
    return {"items": json.loads(info.stdout)["items"], "read_s": read_s, "bytes": du(store), "logit_bytes": json.loads(info.stdout)["bytes_on_disk"],
            "epoch_peak_rss_mb": rss / 1024, "epoch_cpu_s": cpu, "epoch_wall_s": time.time() - t}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=2_000_000)
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--topk", type=int, default=20)
    ap.add_argument("--classes", type=int, default=527)
    ap.add_argument("--shards", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=0.2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", required=True)
    ap.add_argument("--measure", action="store_true", help="also measure ced on it (and on a --small store)")
    ap.add_argument("--small", type=int, default=600, help="items of the small store measured beside it")
    ap.add_argument("--keep", action="store_true", help="keep the generated stores")
    ap.add_argument("--reuse", action="store_true", help="measure the stores already at --output (written by an earlier --keep run)")
    a = ap.parse_args()
    t = time.time()
    if not (a.reuse and os.path.exists(os.path.join(a.output, "store.json"))):
        make_store(a.output, a.items, a.epochs, a.topk, a.shards, a.classes, a.seconds, a.seed)
    print(f"wrote {a.output}: {a.items} items x {a.epochs} epochs x top {a.topk} in {a.shards} shards, {du(a.output) / 1e9:.2f} GB, in {time.time() - t:.0f} s")
    if not a.measure:
        return
    small = a.output.rstrip("/") + "-small"
    if not (a.reuse and os.path.exists(os.path.join(small, "store.json"))):
        make_store(small, a.small, a.epochs, a.topk, 1, a.classes, a.seconds, a.seed)
    work = a.output.rstrip("/") + "-work"
    os.makedirs(work, exist_ok=True)
    rows = [("small", measure(small, work)), ("large", measure(a.output, work))]
    print(f"{'store':6} {'items':>9} {'logits GB':>9} {'with audio GB':>13} {'read CPU s':>10} {'epoch peak RSS MB':>17} {'epoch CPU s':>11} {'epoch wall s':>12}")
    for name, m in rows:
        print(f"{name:6} {m['items']:9d} {m['logit_bytes'] / 1e9:9.3f} {m['bytes'] / 1e9:13.3f} {m['read_s']:10.1f} {m['epoch_peak_rss_mb']:17.0f} {m['epoch_cpu_s']:11.0f} {m['epoch_wall_s']:12.0f}")
    print(f"peak RSS, large - small: {rows[1][1]['epoch_peak_rss_mb'] - rows[0][1]['epoch_peak_rss_mb']:.0f} MB")
    print(json.dumps(dict(rows)))
    if not a.keep:
        for d in (a.output, small, work):
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
