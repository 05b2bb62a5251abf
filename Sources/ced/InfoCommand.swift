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

    @OptionGroup var checkpoint: CheckpointOptions

    @Option(help: ArgumentHelp("text or json.", valueName: "format"))
    var format: InfoFormat = .text

    enum InfoFormat: String, ExpressibleByArgument { case text, json }

    func run() throws {
        let info = CedModelInfo(try checkpoint.load(model, quiet: format == .json), name: model)
        print(format == .json ? try info.json() : info.text)
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
