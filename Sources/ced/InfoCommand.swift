import ArgumentParser
import CED
import Foundation

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show where a model resolves to, its architecture, size, labels and feature settings.",
        discussion: """
            Examples:
              ced info mispeech/ced-tiny
              ced info ./my-finetuned-model --format json
              ced info audiotransformer_base_mAP_4999.pt --labels class_labels_indices.csv
            """)

    @Argument(help: ArgumentHelp("Hub id, local folder or checkpoint file.", valueName: "model"))
    var model: String

    @Option(help: ArgumentHelp("Hub revision: branch, tag or commit.", valueName: "rev"))
    var revision: String?

    @Option(name: .customLong("labels"), help: ArgumentHelp("Class names from a CSV (index,mid,display_name).", valueName: "csv"))
    var labels: String?

    @Option(name: .customLong("config"), help: ArgumentHelp("config.json for a checkpoint file that has none beside it.", valueName: "json"))
    var configFile: String?

    @Option(help: ArgumentHelp("Attention heads of a checkpoint without config.json.", valueName: "n"))
    var numHeads: Int?

    @Option(help: ArgumentHelp("text or json.", valueName: "format"))
    var format: InfoFormat = .text

    enum InfoFormat: String, ExpressibleByArgument { case text, json }

    func run() throws {
        let ckpt = try loadCheckpoint(model, revision: revision, labels: labels, configFile: configFile,
                                      numHeads: numHeads, quiet: format == .json)
        let c = ckpt.config, fe = ckpt.featureExtractorConfig
        let parameters = ckpt.weights.tensors.filter { !$0.key.hasSuffix("num_batches_tracked") && !$0.key.hasSuffix("running_mean") && !$0.key.hasSuffix("running_var") }
            .values.reduce(0) { $0 + $1.count }
        let origin: String
        switch ckpt.origin {
        case .hub(let repo, let rev, let commit, let files):
            origin = "hub \(repo) @ \(rev) (commit \(commit)), cached at \(files.first?.deletingLastPathComponent().path ?? "?")"
        case .directory(let url): origin = "folder \(url.path)"
        case .file(let url): origin = "file \(url.path)"
        }
        let configFrom: String
        switch ckpt.configSource {
        case .file(let url): configFrom = url.path
        case .given: configFrom = "given"
        case .inferred: configFrom = "inferred from tensor shapes"
        }
        let seconds = Double(c.targetLength * fe.hopSize) / Double(fe.samplingRate)
        if format == .json {
            var o: [String: Any] = [
                "model": model, "resolved": origin, "format": "\(ckpt.format)", "layout": "\(ckpt.layout)",
                "config_source": configFrom, "parameters": parameters,
                "config": try JSONSerialization.jsonObject(with: JSONEncoder().encode(c)),
                "preprocessor_config": try JSONSerialization.jsonObject(with: JSONEncoder().encode(fe)),
                "warnings": ckpt.warnings,
            ]
            o["chunk_seconds"] = seconds
            let data = try JSONSerialization.data(withJSONObject: o, options: [.prettyPrinted, .sortedKeys])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        var lines: [String] = []
        lines.append("model         \(model)")
        lines.append("resolved      \(origin)")
        lines.append("weights       \(ckpt.format), \(ckpt.layout) tensor names")
        lines.append("config        \(configFrom)")
        lines.append("architecture  \(c.name ?? "custom"): embed_dim \(c.embedDim), depth \(c.depth), heads \(c.numHeads), mlp_ratio \(c.mlpRatio), qkv_bias \(c.qkvBias)")
        lines.append("patches       \(c.patchSize.frequency)×\(c.patchSize.time), stride \(c.patchStride.frequency)×\(c.patchStride.time); \(c.frequencyPatches) × \(c.maxTimePatches) per chunk")
        lines.append("chunks        target_length \(c.targetLength) frames (\(String(format: "%.2f", seconds)) s), pad_last \(c.padLast), eval_avg \(c.evalAvg.rawValue)")
        lines.append("pooling       \(c.pooling.rawValue)")
        lines.append("parameters    \(parameters) (\(String(format: "%.1f", Double(parameters) / 1e6)) M)")
        let names = (0..<min(c.outputdim, 5)).map { c.label(for: $0) }.joined(separator: ", ")
        lines.append("classes       \(c.outputdim)" + (c.id2label == nil ? " (no labels: LABEL_<i>)" : ": \(names)\(c.outputdim > 5 ? ", …" : "")"))
        lines.append("features      \(fe.samplingRate) Hz, \(fe.featureSize) mels \(fe.fMin)–\(fe.resolvedFMax) Hz, n_fft \(fe.nFft), win \(fe.winSize), hop \(fe.hopSize), center \(fe.center)")
        if let cmp = ckpt.frontEndComparison {
            lines.append("front end     stored window/filterbank " + (cmp.matches ? "match the feature extractor" : "differ: " + cmp.mismatches.joined(separator: "; ")))
        }
        print(lines.joined(separator: "\n"))
    }
}

struct Download: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fill the Hugging Face cache ahead of time (for offline machines and containers).",
        discussion: """
            Files go where huggingface_hub puts them ($HF_HUB_CACHE, else $HF_HOME/hub, else \
            ~/.cache/huggingface/hub), so Python tools share them. Later runs work offline \
            (HF_HUB_OFFLINE=1).

            Examples:
              ced download mispeech/ced-mini mispeech/ced-base
              HF_HUB_CACHE=/models ced download ced-tiny
            """)

    @Argument(help: ArgumentHelp("Hub ids (owner/name[@revision]; ced-tiny etc. mean mispeech/ced-tiny).", valueName: "model"))
    var models: [String] = []

    @Flag(name: .shortAndLong, help: "No progress bar.")
    var quiet = false

    func validate() throws {
        if models.isEmpty { throw ValidationError("give at least one model id") }
    }

    func run() throws {
        var failed = 0
        for spec in models {
            do {
                let ckpt = try loadCheckpoint(spec, quiet: quiet)
                switch ckpt.origin {
                case .hub(let repo, let rev, let commit, let files):
                    print("\(repo) @ \(rev): commit \(commit), \(files.count) files in \(files.first?.deletingLastPathComponent().path ?? "?")")
                case .directory(let url), .file(let url):
                    print("\(spec): a local path (\(url.path)), nothing to download; it loads fine")
                }
            } catch {
                Terminal.error("\(spec): \(describe(error))")
                failed += 1
            }
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
