import Foundation

/// Where a model comes from, as decided from the string a user typed (`--model`).
public enum ModelSource: Sendable, Equatable {
    /// A Hugging Face hub repository at a revision (branch, tag or commit).
    case hub(repo: String, revision: String)
    /// A local folder in the Hugging Face layout (`config.json`, `model.safetensors` or
    /// `pytorch_model.bin`, optional `preprocessor_config.json`).
    case directory(URL)
    /// A single checkpoint file: `.safetensors`, a Hugging Face `pytorch_model.bin`, or
    /// one of the original repository's `.pt` files.
    case file(URL)

    /// Short names of the published checkpoints, resolved to `mispeech/<name>`.
    public static let publishedModels = ["ced-tiny", "ced-mini", "ced-small", "ced-base"]

    /// Extensions of weight files (a folder holding one is a model, not only an architecture).
    public static let weightExtensions: Set<String> = ["safetensors", "pt", "pth", "bin", "ckpt"]

    /// File extensions that mark a string as a path even when nothing exists there.
    static let checkpointExtensions = weightExtensions.union(["json"])

    /// Classifies `spec`, in this order:
    ///
    /// 1. an existing file or directory (after `~` expansion) is used as such — a local
    ///    folder named like a hub id wins over the hub;
    /// 2. a string that can only be a path (starts with `/`, `./`, `../` or `~`, or ends
    ///    in `.safetensors`, `.pt`, `.pth`, `.bin`, `.ckpt`, `.json`) but does not exist
    ///    is a `CheckpointError` (`.notFound`);
    /// 3. `ced-tiny`, `ced-mini`, `ced-small`, `ced-base` mean `mispeech/<name>`;
    /// 4. `owner/name`, optionally `owner/name@revision`, is a hub id (revision `main`
    ///    unless given here or by `revision`);
    /// 5. anything else is a `CheckpointError` (`.invalidSpec`).
    public static func classify(_ spec: String, revision: String? = nil) throws -> ModelSource {
        let trimmed = spec.trimmingCharacters(in: .whitespaces)
        guard !trimmed.isEmpty else {
            throw CheckpointError(.invalidSpec, file: spec, reason: "empty model name")
        }
        let expanded = (trimmed as NSString).expandingTildeInPath
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: expanded, isDirectory: &isDir) {
            let url = URL(fileURLWithPath: expanded, isDirectory: isDir.boolValue).standardizedFileURL
            if revision != nil {
                throw CheckpointError(.invalidSpec, file: spec, reason: "a revision only applies to hub models, but this is a local path")
            }
            return isDir.boolValue ? .directory(url) : .file(url)
        }
        let ext = (trimmed as NSString).pathExtension.lowercased()
        if trimmed.hasPrefix("/") || trimmed.hasPrefix("./") || trimmed.hasPrefix("../") || trimmed.hasPrefix("~")
            || checkpointExtensions.contains(ext) || trimmed == "." || trimmed == ".." {
            throw CheckpointError(.notFound, file: expanded, reason: "no such file or directory")
        }
        var repo = trimmed
        var rev = revision
        if let at = trimmed.firstIndex(of: "@") {
            repo = String(trimmed[..<at])
            let r = String(trimmed[trimmed.index(after: at)...])
            guard !r.isEmpty else { throw CheckpointError(.invalidSpec, file: spec, reason: "empty revision after '@'") }
            if let revision, revision != r {
                throw CheckpointError(.invalidSpec, file: spec, reason: "revision '\(r)' in the name conflicts with revision '\(revision)'")
            }
            rev = r
        }
        if publishedModels.contains(repo) { repo = "mispeech/" + repo }
        guard HubClient.isValidRepoId(repo) else {
            throw CheckpointError(.invalidSpec, file: spec,
                                  reason: "not an existing file or folder, and not a hub id (owner/name, e.g. mispeech/ced-tiny)")
        }
        return .hub(repo: repo, revision: rev ?? "main")
    }
}

/// What a model argument names where it may also be an architecture to initialise
/// (`ced finetune --model`, `ced distill train --student`).
public enum CedModelSpec: Sendable, Equatable {
    /// A published architecture by name (`ModelSource.publishedModels`), to initialise.
    case preset(String)
    /// A `config.json` of architecture fields, to initialise.
    case architecture(configFile: URL)
    /// A model to load with `PretrainedCheckpoint.load`: a hub id, a folder or a checkpoint file.
    case checkpoint(String)

    /// Classifies `spec`, in this order:
    /// 1. with `presets`, a published name (`ced-tiny`, …) that is not an existing path is a preset;
    /// 2. an existing `.json` file is an architecture, and so is an existing folder holding a
    ///    `config.json` and no weight file (`ModelSource.weightExtensions`);
    /// 3. anything else is a checkpoint (`ModelSource.classify` says later what it is, or what is wrong).
    public static func resolve(_ spec: String, presets: Bool = false) -> CedModelSpec {
        let path = (spec as NSString).expandingTildeInPath
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDir) else {
            return presets && ModelSource.publishedModels.contains(spec) ? .preset(spec) : .checkpoint(spec)
        }
        if !isDir.boolValue {
            return path.lowercased().hasSuffix(".json") ? .architecture(configFile: URL(fileURLWithPath: path)) : .checkpoint(spec)
        }
        let entries = (try? fm.contentsOfDirectory(atPath: path)) ?? []
        let hasWeights = entries.contains { ModelSource.weightExtensions.contains(($0 as NSString).pathExtension.lowercased()) }
        guard entries.contains("config.json") && !hasWeights else { return .checkpoint(spec) }
        return .architecture(configFile: URL(fileURLWithPath: path).appendingPathComponent("config.json"))
    }

    /// The feature extractor of an architecture: the `preprocessor_config.json` beside its
    /// `config.json`, else the defaults.
    public static func featureExtractorConfig(besides configFile: URL) throws -> CedFeatureExtractorConfig {
        let url = configFile.deletingLastPathComponent().appendingPathComponent("preprocessor_config.json")
        return FileManager.default.fileExists(atPath: url.path) ? try CedFeatureExtractorConfig.load(from: url) : CedFeatureExtractorConfig()
    }
}
