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

    /// File extensions that mark a string as a path even when nothing exists there.
    static let checkpointExtensions = ["safetensors", "pt", "pth", "bin", "ckpt", "json"]

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
