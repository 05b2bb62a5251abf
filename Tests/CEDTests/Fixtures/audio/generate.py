#!/usr/bin/env python3
"""Generates the expected outputs for AudioFormatTests, independently of the Swift code.

For every case the test writes a WAV file (format, rate, channels, container variant) whose
samples come from the integer formula `base_signal` below (the Swift test implements the
same formula). This script computes what the reference pipeline gives for that file:

  1. samples scaled exactly as torchaudio/soundfile load them into float32
     (u8: (u-128)/128, s16: /32768, s24: /8388608, s32: float32(x)/2^31, f64 -> float32),
  2. channels averaged in float32 (`x.mean(dim=0)`),
  3. `torchaudio.functional.resample(x, rate, 16000)` with its defaults, implemented here
     from its definition with numpy: the polyphase windowed-sinc kernel
     (lowpass_filter_width=6, rolloff=0.99, sinc_interp_hann) built with the float32
     arithmetic torchaudio uses for a float32 waveform, and the strided convolution
     evaluated in float64; output length ceil(16000 * n / rate).

The MP3 case is a real MP3 (made here with ffmpeg/libmp3lame, committed as a fixture); its
expected output is ffmpeg's float decoding of it, resampled as above.

When ../shared/reference is present, the numpy resampler is first checked against the
authors' goldens (`wave16k` of the 32 kHz and 44.1 kHz files).

Run from anywhere:  python3 Tests/CEDTests/Fixtures/audio/generate.py
Needs numpy, and ffmpeg for the MP3 fixture. Writes expected.safetensors and
tone_44k1_mono.mp3 next to this script.
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = 16000

# name, encoding, channels, rate, frames, container variant, seed
CASES = [
    ("u8_22050_mono", "u8", 1, 22050, 1103, "plain", 1),
    ("s16_8000_mono_datasize0", "s16", 1, 8000, 400, "datasize0", 2),
    ("s16_11025_stereo", "s16", 2, 11025, 551, "plain", 3),
    ("s24_24000_3ch_extensible", "s24", 3, 24000, 1200, "extensible", 4),
    ("s16_32000_mono_chunk_order", "s16", 1, 32000, 1601, "chunkorder", 5),
    ("s24_44100_stereo", "s24", 2, 44100, 2205, "plain", 6),
    ("s32_48000_stereo", "s32", 2, 48000, 2400, "plain", 7),
    ("f32_96000_mono", "f32", 1, 96000, 4801, "plain", 8),
    ("f32_44100_6ch_extensible", "f32", 6, 44100, 2205, "extensible", 9),
    ("f64_16000_stereo", "f64", 2, 16000, 800, "plain", 10),
    ("s16_44100_stereo_rf64", "s16", 2, 44100, 2205, "rf64", 11),
    ("s16_48000_mono_streaming", "s16", 1, 48000, 2400, "streaming", 12),
    ("s24_96000_stereo", "s24", 2, 96000, 4800, "plain", 13),
]
MP3_CASE = ("mp3_44100_mono", "s16", 1, 44100, 4410, "plain", 14)


def base_signal(frames, channels, seed):
    """24-bit signed integers [frames, channels]: a sawtooth per channel plus LCG noise."""
    state = seed & 0xFFFFFFFF
    out = np.empty((frames, channels), dtype=np.int64)
    for i in range(frames):
        for c in range(channels):
            state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
            noise = ((state >> 8) & 0xFFFFFF) - 0x800000
            saw = ((i * (3 + 2 * c)) % 256) * 65536 - 0x800000
            out[i, c] = (saw >> 1) + (noise >> 2)
    # Full-scale extremes so the scaling of the most negative/positive codes is checked.
    out[0, 0] = -0x800000
    if frames > 1:
        out[1, 0] = 0x7FFFFF
    return out


def loaded_float32(v, encoding):
    """What torchaudio.load(normalize=True) returns for the stored integers, per channel."""
    f32 = np.float32
    frames, channels = v.shape
    if encoding == "u8":
        u = (v >> 16) + 128
        return ((u - 128).astype(np.float64) / 128).astype(f32)
    if encoding == "s16":
        return ((v >> 8).astype(np.float64) / 32768).astype(f32)
    if encoding == "s24":
        return (v.astype(np.float64) / 8388608).astype(f32)
    if encoding == "s32":
        i = np.arange(frames)[:, None]
        c = np.arange(channels)[None, :]
        s32 = v * 256 + ((i * 7 + c * 13) & 0xFF)
        return s32.astype(f32) / f32(2147483648.0)  # float32(x) then exact power-of-two scale
    if encoding == "f32":
        return v.astype(f32) / f32(4194304.0)
    if encoding == "f64":
        c = np.arange(channels)[None, :]
        d = v.astype(np.float64) / 8388608 + (c + 1) * 2.0 ** -40
        return d.astype(f32)
    raise ValueError(encoding)


def downmix(x32):
    acc = x32[:, 0].copy()
    for c in range(1, x32.shape[1]):
        acc = (acc + x32[:, c]).astype(np.float32)
    return (acc / np.float32(x32.shape[1])).astype(np.float32)


def sinc_kernel(orig, new, lowpass_filter_width=6, rolloff=0.99):
    """torchaudio's kernel [new, 2*width+orig] for reduced rates, with float32 arithmetic."""
    f32 = np.float32
    base = min(orig, new) * rolloff
    width = math.ceil(lowpass_filter_width * orig / base)
    idx = np.arange(-width, width + orig, dtype=f32) / f32(orig)
    t = (np.arange(0, -new, -1, dtype=f32) / f32(new))[:, None] + idx[None, :]
    t = t * f32(base)
    t = np.clip(t, f32(-lowpass_filter_width), f32(lowpass_filter_width))
    window = np.cos(t * f32(math.pi) / f32(lowpass_filter_width) / f32(2)) ** 2
    t = t * f32(math.pi)
    with np.errstate(invalid="ignore", divide="ignore"):
        k = np.where(t == 0, f32(1), np.sin(t) / t)
    k = k * (window * f32(base / orig))
    return k.astype(np.float64), width


def resample(x, orig_freq, new_freq=TARGET):
    x = np.asarray(x, dtype=np.float64)
    if orig_freq == new_freq:
        return x
    g = math.gcd(orig_freq, new_freq)
    o, n = orig_freq // g, new_freq // g
    kernel, width = sinc_kernel(o, n)
    length = len(x)
    padded = np.concatenate([np.zeros(width), x, np.zeros(width + o)])
    taps = kernel.shape[1]
    blocks = (len(padded) - taps) // o + 1
    frames = np.lib.stride_tricks.as_strided(
        padded, shape=(blocks, taps), strides=(padded.strides[0] * o, padded.strides[0]))
    y = (frames @ kernel.T).reshape(-1)
    return y[: -(-n * length // o)]


def read_wav(path):
    """Minimal RIFF reader for the shared reference files (PCM 16/24, float32)."""
    b = open(path, "rb").read()
    pos, fmt, data = 12, None, None
    while pos + 8 <= len(b):
        cid = b[pos:pos + 4]
        size = struct.unpack("<I", b[pos + 4:pos + 8])[0]
        body = b[pos + 8:pos + 8 + size]
        if cid == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
        elif cid == b"data":
            data = body
        pos += 8 + size + (size & 1)
    tag, channels, rate, _, _, bits = fmt
    if tag == 3:
        x = np.frombuffer(data, dtype="<f4")
    elif bits == 16:
        x = (np.frombuffer(data, dtype="<i2") / 32768.0).astype(np.float32)
    elif bits == 24:
        u = np.frombuffer(data, dtype=np.uint8).reshape(-1, 3).astype(np.int64)
        v = u[:, 0] | (u[:, 1] << 8) | (u[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        x = (v / 8388608.0).astype(np.float32)
    return x.reshape(-1, channels), rate


def check_against_goldens():
    shared = os.environ.get("CED_SHARED_DIR") or os.path.join(HERE, "../../../../../shared")
    ref = os.path.join(shared, "reference")
    golden_path = os.path.join(ref, "golden/micro.safetensors")
    if not os.path.exists(golden_path):
        print("shared reference not found; skipping the golden check")
        return
    raw = open(golden_path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    for name in ["ukulele_speech_32k_mono_s16.wav", "chirp_44k1_stereo_s24.wav"]:
        x, rate = read_wav(os.path.join(ref, "audio", name))
        y = resample(downmix(x), rate)
        info = header[name + "/wave16k"]
        s, e = info["data_offsets"]
        g = np.frombuffer(raw[8 + n + s:8 + n + e], dtype="<f4")
        d = float(np.abs(y - g).max())
        print(f"numpy resample vs golden {name}: max abs difference {d:.3g}")
        assert len(y) == len(g) and d < 1e-6, "the numpy reference does not reproduce the golden"


def write_wav_s16(path, v16, rate):
    frames, channels = v16.shape
    data = v16.astype("<i2").tobytes()
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    header += b"data" + struct.pack("<I", len(data))
    open(path, "wb").write(header + data)


def make_mp3():
    name, enc, channels, rate, frames, _, seed = MP3_CASE
    v = base_signal(frames, channels, seed)
    mp3 = os.path.join(HERE, "tone_44k1_mono.mp3")
    with tempfile.TemporaryDirectory() as tmp:
        wav = os.path.join(tmp, "in.wav")
        write_wav_s16(wav, v >> 8, rate)
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", wav, "-c:a", "libmp3lame",
                        "-b:a", "48k", "-bitexact", "-map_metadata", "-1", mp3], check=True)
    pcm = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", mp3, "-map", "0:a:0",
                          "-c:a", "pcm_f32le", "-f", "f32le", "-"], check=True, capture_output=True).stdout
    decoded = np.frombuffer(pcm, dtype="<f4").reshape(-1, channels)
    return name, resample(downmix(decoded), rate)


def write_safetensors(path, tensors, metadata):
    header, offset, blobs = {"__metadata__": metadata}, 0, []
    for name, arr in tensors.items():
        blob = np.asarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": [len(arr)], "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    check_against_goldens()
    tensors = {}
    for name, enc, channels, rate, frames, variant, seed in CASES:
        v = base_signal(frames, channels, seed)
        y = resample(downmix(loaded_float32(v, enc)), rate)
        tensors[name] = y
    if "--no-mp3" not in sys.argv:
        name, y = make_mp3()
        tensors[name] = y
    cases = [dict(name=c[0], encoding=c[1], channels=c[2], rate=c[3], frames=c[4], variant=c[5], seed=c[6])
             for c in CASES + [MP3_CASE]]
    write_safetensors(os.path.join(HERE, "expected.safetensors"), tensors, {"cases": json.dumps(cases)})
    for k, y in tensors.items():
        print(f"{k}: {len(y)} samples")


if __name__ == "__main__":
    main()
