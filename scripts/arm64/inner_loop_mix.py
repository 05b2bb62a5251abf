#!/usr/bin/env python3
"""Instruction mix of a kernel's inner loop, from `objdump -d` output of an AArch64 object.

Usage: inner_loop_mix.py OBJDUMP_TEXT FUNCTION [MNEMONIC_PREFIX...]

The inner loop is the innermost loop (a backward branch with no other backward branch
inside) of FUNCTION whose body holds the most instructions that start with one of the
prefixes (default: fmla). Prints the loop's size,
how many of its instructions are the FMA-class ones, the loads, the stack spills, and the
vector registers it uses."""
import re
import sys
from collections import Counter

text, func = open(sys.argv[1]).read(), sys.argv[2]
prefixes = tuple(sys.argv[3:]) or ("fmla",)
body = re.search(r"<%s>:\n(.*?)(?:\n\n|\Z)" % re.escape(func), text, re.S)
if not body:
    sys.exit(f"{func}: not found")
insns = []
for line in body.group(1).splitlines():
    m = re.match(r"\s*([0-9a-f]+):\s+[0-9a-f]{8}\s+(\S+)\s*(.*)", line)
    if m:
        insns.append((int(m.group(1), 16), m.group(2), m.group(3)))
addr_index = {a: i for i, (a, _, _) in enumerate(insns)}


def is_branch(op):
    return (op.startswith("b") and not op.startswith(("bl", "bfdot", "bfmmla", "bsl", "bic", "bif", "bit", "bfcvt"))) or op in (
        "cbnz", "cbz", "tbnz", "tbz")


def is_back_branch(a, op, args):
    if not is_branch(op):
        return False
    m = re.search(r"\b([0-9a-f]+) <", args)
    return bool(m) and int(m.group(1), 16) <= a
best = None
for i, (a, op, args) in enumerate(insns):
    if is_branch(op):
        m = re.search(r"\b([0-9a-f]+) <", args)
        if not m:
            continue
        target = int(m.group(1), 16)
        if target > a or target not in addr_index:
            continue
        loop = insns[addr_index[target]: i + 1]
        # Innermost loops only: no other backward branch inside.
        if any(is_back_branch(a2, o2, args2) for a2, o2, args2 in loop[:-1]):
            continue
        n_fma = sum(1 for _, o, _ in loop if o.startswith(prefixes))
        if best is None or n_fma > best[0]:
            best = (n_fma, loop)
if not best:
    sys.exit(f"{func}: no loop")
n_fma, loop = best
ops = Counter(o for _, o, _ in loop)
loads = sum(v for o, v in ops.items() if o.startswith(("ld", "ldr", "ldp", "ldur")))
spills = sum(1 for _, o, args in loop if "sp" in re.split(r"[\s,\[\]#]+", args) and o.startswith(("st", "ld")))
regs = set(re.findall(r"\bv(\d+)\.", " ".join(args for _, _, args in loop))) | set(
    re.findall(r"\bq(\d+)\b", " ".join(args for _, _, args in loop)))
print(f"{func}: inner loop {len(loop)} instructions, {n_fma} {'/'.join(prefixes)} "
      f"({n_fma / len(loop):.3f}), {loads} loads, {spills} stack spills/reloads, "
      f"{len(regs)} vector registers; mix: " + ", ".join(f"{o} {c}" for o, c in ops.most_common()))
