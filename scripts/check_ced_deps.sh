#!/usr/bin/env bash
# The CED library must keep no server dependency: an app that adds the `CED` product must not
# pull in SwiftNIO, Hummingbird or anything else. Checks the manifest (the CED product is the
# CED target, which depends on CEDKernels only, which depends on nothing) and the sources (no
# import of a package module under Sources/CED or Sources/CEDKernels).
set -euo pipefail
cd "$(dirname "$0")/.."
swift package dump-package | python3 -c '
import json, sys
p = json.load(sys.stdin)
targets = {t["name"]: t for t in p["targets"]}
product = next(x for x in p["products"] if x["name"] == "CED")
def deps(t):
    out = []
    for d in targets[t]["dependencies"]:
        kind, value = next(iter(d.items()))
        out.append((kind, value[0]))
    return out
problems = []
ced, kernels = deps("CED"), deps("CEDKernels")
if product["targets"] != ["CED"]: problems.append("product CED has targets %s" % product["targets"])
if ced != [("byName", "CEDKernels")]: problems.append("target CED depends on %s" % ced)
if kernels: problems.append("target CEDKernels depends on %s" % kernels)
if problems:
    sys.exit("check_ced_deps: " + "; ".join(problems))
print("check_ced_deps: the CED product is CED + CEDKernels, no package dependency")
'
if grep -rnE '^\s*(@_exported\s+)?import\s+(NIO|Hummingbird|Logging|Prometheus|Metrics|ServiceLifecycle|ArgumentParser|WSCore)' Sources/CED Sources/CEDKernels; then
    echo "check_ced_deps: Sources/CED imports a package module (above)" >&2
    exit 1
fi
