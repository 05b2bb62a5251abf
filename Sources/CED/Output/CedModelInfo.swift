import Foundation

/// What `ced info` says about a loaded checkpoint: where it resolved to, its architecture,
/// size, labels and front end, as text lines or as a JSON document.
public struct CedModelInfo {
    /// The model as the user named it.
    public var name: String
    public var checkpoint: PretrainedCheckpoint

    public init(_ checkpoint: PretrainedCheckpoint, name: String) {
        self.checkpoint = checkpoint
        self.name = name
    }

    /// `hub <repo> @ <rev> (commit …), cached at <dir>`, `folder <path>` or `file <path>`.
    public var resolved: String {
        switch checkpoint.origin {
        case .hub(let repo, let rev, let commit, let files):
            return "hub \(repo) @ \(rev) (commit \(commit)), cached at \(files.first?.deletingLastPathComponent().path ?? "?")"
        case .directory(let url): return "folder \(url.path)"
        case .file(let url): return "file \(url.path)"
        }
    }

    /// Where the configuration came from.
    public var configSource: String {
        switch checkpoint.configSource {
        case .file(let url): return url.path
        case .given: return "given"
        case .inferred: return "inferred from tensor shapes"
        }
    }

    /// Seconds of audio in one chunk of `target_length` frames.
    public var chunkSeconds: Double {
        let fe = checkpoint.featureExtractorConfig
        return Double(checkpoint.config.targetLength * fe.hopSize) / Double(fe.samplingRate)
    }

    /// What `--precision auto` picks for this model on this CPU (measured once, cached).
    var auto: CedPrecisionAdvisor.Choice { CedPrecisionAdvisor.shared.choice(for: checkpoint.config) }

    /// A pretty-printed JSON object with sorted keys: model, resolved, format, layout,
    /// config_source, parameters, config, preprocessor_config, chunk_seconds, warnings,
    /// precision_auto.
    public func json() throws -> String {
        let o: [String: Any] = [
            "model": name, "resolved": resolved, "format": "\(checkpoint.format)", "layout": "\(checkpoint.layout)",
            "config_source": configSource, "parameters": CedParameterTable(config: checkpoint.config).trainableValues(in: checkpoint.weights),
            "config": try JSONSerialization.jsonObject(with: JSONEncoder().encode(checkpoint.config)),
            "preprocessor_config": try JSONSerialization.jsonObject(with: JSONEncoder().encode(checkpoint.featureExtractorConfig)),
            "warnings": checkpoint.warnings, "chunk_seconds": chunkSeconds,
            "precision_auto": [
                "plan": auto.plan.description, "kernels": auto.plan.kernelPath, "machine": auto.machine,
                "ms_per_block": auto.milliseconds,
            ] as [String: Any],
        ]
        return String(decoding: try JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self)
    }

    /// One line per fact: model, resolved, weights, config, architecture, patches, chunks,
    /// pooling, parameters, classes, features and, for original checkpoints, the front end.
    public var text: String {
        let c = checkpoint.config, fe = checkpoint.featureExtractorConfig, parameters = CedParameterTable(config: c).trainableValues(in: checkpoint.weights)
        let names = (0..<min(c.outputdim, 5)).map { c.label(for: $0) }.joined(separator: ", ")
        var lines = [
            "model         \(name)",
            "resolved      \(resolved)",
            "weights       \(checkpoint.format), \(checkpoint.layout) tensor names",
            "config        \(configSource)",
            "architecture  \(c.name ?? "custom"): embed_dim \(c.embedDim), depth \(c.depth), heads \(c.numHeads), "
                + "mlp_ratio \(c.mlpRatio), qkv_bias \(c.qkvBias)",
            "patches       \(c.patchSize.frequency)×\(c.patchSize.time), stride \(c.patchStride.frequency)×\(c.patchStride.time); "
                + "\(c.frequencyPatches) × \(c.maxTimePatches) per chunk",
            "chunks        target_length \(c.targetLength) frames (\(String(format: "%.2f", chunkSeconds)) s), pad_last \(c.padLast), "
                + "eval_avg \(c.evalAvg.rawValue)",
            "pooling       \(c.pooling.rawValue)",
            "parameters    \(parameters) (\(String(format: "%.1f", Double(parameters) / 1e6)) M)",
            "classes       \(c.outputdim)" + (c.id2label == nil ? " (no labels: LABEL_<i>)" : ": \(names)\(c.outputdim > 5 ? ", …" : "")"),
            "features      \(fe.samplingRate) Hz, \(fe.featureSize) mels \(fe.fMin)–\(fe.resolvedFMax) Hz, n_fft \(fe.nFft), "
                + "win \(fe.winSize), hop \(fe.hopSize), center \(fe.center)",
            "precision     auto → \(CedPrecisionAdvisor.shared.summary(for: c))",
        ]
        if let cmp = checkpoint.frontEndComparison {
            lines.append("front end     stored window/filterbank "
                         + (cmp.matches ? "match the feature extractor" : "differ: " + cmp.mismatches.joined(separator: "; ")))
        }
        return lines.joined(separator: "\n")
    }
}
