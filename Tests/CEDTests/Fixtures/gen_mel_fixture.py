#!/usr/bin/env python3
"""Independent float64 reference for CedFeatureExtractor (writes mel_fixture.json).

A plain numpy implementation of torchaudio's
  MelSpectrogram(sample_rate, n_fft, win_length, hop_length, f_min, f_max, n_mels, center,
                 pad_mode="reflect", power=2, window_fn=hann_window (periodic), mel_scale="htk",
                 norm=None)
followed by AmplitudeToDB(stype="power", top_db), everything in float64:
  * center: np.pad(x, n_fft // 2, mode="reflect") (numpy repeats the reflection when the
    signal is shorter than the padding, where torch would raise)
  * frames: 1 + (len(padded) - n_fft) // hop, window zero-padded centred in n_fft
  * power spectrum from np.fft.rfft
  * filterbank: all_freqs = linspace(0, sr // 2, n_fft // 2 + 1), HTK triangles, no norm
  * dB = 10 log10(max(mel, 1e-10)), clamped at max - top_db over the clip.

The waveform is not stored: the Swift test regenerates it from `signal()` below (float64
math rounded to float32), and checks the stored sum to make sure both sides agree.

Run: python3 gen_mel_fixture.py   (numpy only; writes mel_fixture.json next to this file)
"""
import json
import math
import os

import numpy as np


def signal(n, sr):
    """Two tones and a little integer-LCG noise, as float32."""
    i = np.arange(n, dtype=np.int64)
    t = i.astype(np.float64) / sr
    lcg = ((i * 1103515245 + 12345) % 2147483648).astype(np.float64) / 2147483648.0 - 0.5
    x = (0.5 * np.sin(2 * math.pi * 440.0 * t)
         + 0.25 * np.sin(2 * math.pi * 2750.3 * t + 0.5)
         + 0.02 * lcg)
    return x.astype(np.float32)


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + f / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (m / 2595.0) - 1.0)


def filterbank(n_freqs, f_min, f_max, n_mels, sr):
    all_freqs = np.linspace(0.0, float(sr // 2), n_freqs)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    fb = np.zeros((n_freqs, n_mels))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        rising = (all_freqs - lo) / (mid - lo)
        falling = (hi - all_freqs) / (hi - mid)
        fb[:, m] = np.maximum(0.0, np.minimum(rising, falling))
    return fb


def log_mel(x, c):
    sr, n_fft, win, hop = c["sampling_rate"], c["n_fft"], c["win_size"], c["hop_size"]
    f_max = c["f_max"] if c["f_max"] is not None else float(sr // 2)
    x = x.astype(np.float64)
    if c["center"]:
        x = np.pad(x, n_fft // 2, mode="reflect")
    frames = 1 + (len(x) - n_fft) // hop
    k = np.arange(win)
    hann = 0.5 - 0.5 * np.cos(2 * math.pi * k / win) if win > 1 else np.ones(1)
    w = np.zeros(n_fft)
    left = (n_fft - win) // 2
    w[left:left + win] = hann
    idx = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    spec = np.fft.rfft(x[idx] * w, axis=1)
    power = spec.real ** 2 + spec.imag ** 2
    fb = filterbank(n_fft // 2 + 1, c["f_min"], f_max, c["feature_size"], sr)
    mel = power @ fb
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - c["top_db"])
    return db.T, fb


def config(**kw):
    c = dict(sampling_rate=16000, feature_size=64, n_fft=512, win_size=512, hop_size=160,
             f_min=0.0, f_max=None, center=True, top_db=120.0)
    c.update(kw)
    return c


CASES = [
    # non-default everything, n_fft 400 (half-size complex FFT of 200 = 2^3·5^2: mixed radix)
    ("nfft400_win300", config(n_fft=400, win_size=300, hop_size=100, feature_size=40,
                              f_min=50.0, f_max=7000.0), 1000, True),
    # the same without centring (1 + (L - n_fft) // hop frames), and a tight top_db
    ("nfft400_win300_nocenter", config(n_fft=400, win_size=300, hop_size=100, feature_size=40,
                                       f_min=50.0, f_max=7000.0, center=False, top_db=50.0),
     1000, False),
    # odd, prime n_fft (Bluestein), odd sampling rate: f_max None -> sr // 2 = 5512
    ("nfft401_sr11025", config(sampling_rate=11025, n_fft=401, win_size=401, hop_size=128,
                               feature_size=24), 1000, False),
    # default CED front end on inputs torch cannot reflect-pad (<= n_fft / 2 samples)
    ("default_len100", config(), 100, False),
    ("default_len3", config(), 3, False),
    ("default_len1", config(), 1, False),
]


def main():
    out = {"generator": "gen_mel_fixture.py (numpy %s, float64)" % np.__version__,
           "signal": "float32(0.5 sin(2π·440·n/sr) + 0.25 sin(2π·2750.3·n/sr + 0.5) + 0.02·(((n·1103515245 + 12345) mod 2^31)/2^31 − 0.5))",
           "cases": []}
    for name, c, length, with_fb in CASES:
        x = signal(length, c["sampling_rate"])
        db, fb = log_mel(x, c)
        case = {"name": name, "config": c, "length": length,
                "signal_sum": float(np.sum(x.astype(np.float64))),
                "shape": list(db.shape),
                "mel_db": [round(float(v), 5) for v in db.ravel()]}
        if with_fb:
            nz = np.nonzero(fb)
            case["fb_shape"] = list(fb.shape)
            case["fb_nonzero"] = [[int(k), int(m), float("%.9g" % fb[k, m])] for k, m in zip(*nz)]
        out["cases"].append(case)
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mel_fixture.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", path, os.path.getsize(path), "bytes")


if __name__ == "__main__":
    main()
