#!/usr/bin/env python3
"""The fine-tuning trajectory fixture: four 16 kHz clips labelled with micro's own class
names (train.csv), and what PyTorch computes for
`ced finetune --model micro --data train.csv --multi-label --epochs 5 --batch-size 4
--lr 0.001 --weight-decay 0.05 --warmup 0 --schedule constant --val-split 0 --no-augment`
(expected.json: the five step losses and the trained model's eval outputs per clip), from
scripts/ced_torch.py replay-csv, whose model matches the shared training goldens.

Run: <venv with torch>/bin/python generate.py  (needs ../shared beside the package)
"""
import json, os, subprocess, sys, wave
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "../../../.."))
sr = 16000
rng = np.random.default_rng(0)
labels = [["Speech"], ["Dog", "Bark"], ["Music"], ["Siren"]]
rows = []
for i, ls in enumerate(labels):
    t = np.arange(int(1.5 * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * (300 + 200 * i) * t) * (0.5 + 0.5 * np.sin(2 * np.pi * (1 + i) * t))
    x = np.clip(x + 0.05 * rng.standard_normal(len(t)), -1, 1)
    with wave.open(os.path.join(HERE, f"clip{i}.wav"), "wb") as w:
        w.setnchannels(1); w.setsampwidth(2); w.setframerate(sr)
        w.writeframes((x * 32767).astype("<i2").tobytes())
    rows.append(f"clip{i}.wav,{';'.join(ls)}")
open(os.path.join(HERE, "train.csv"), "w").write("file,label\n" + "\n".join(rows) + "\n")
out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts/ced_torch.py"), "replay-csv",
                      "--model", os.path.join(ROOT, "../shared/reference/models/micro"), "--csv", os.path.join(HERE, "train.csv"),
                      "--epochs", "5", "--lr", "0.001", "--weight-decay", "0.05"], check=True, capture_output=True, text=True).stdout
json.dump(json.loads(out), open(os.path.join(HERE, "expected.json"), "w"))
print(json.loads(out)["losses"])
