import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Writes a CED model as a Hugging Face folder, atomically: every saved model (a new head
/// on a base encoder from `ced train-head`, a fine-tuned or distilled network).
///
/// The folder holds `config.json` (the model's configuration, e.g. the base model's with a
/// new `outputdim`, `id2label` and `label2id`; keys of the base `config.json` that
/// `CedConfig` does not model, such as `auto_map`, are kept), `model.safetensors` (every
/// tensor of `CedParameterTable`, float32 except the int64 BatchNorm step counter,
/// metadata `format: pt` as `transformers` expects), `preprocessor_config.json`, and any
/// extra files given (e.g. `training_report.json`).
///
/// Everything is written into a hidden sibling folder that is renamed into place at the
/// end; on any failure it is removed, so the output path either gets a complete model or
/// is left as it was.
public enum CedModelWriter {
    /// Checks, before any work, that `output` can receive a model: it must not exist, or be
    /// an empty folder, or (with `overwrite`) a folder holding a `config.json` (a model
    /// folder; other folders are never replaced).
    public static func checkOutput(_ output: URL, overwrite: Bool) throws {
        let fm = FileManager.default
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: output.path, isDirectory: &isDir) else { return }
        guard isDir.boolValue else {
            throw TrainingError(.output, file: output.path, reason: "exists and is a file, not a folder")
        }
        let contents = (try? fm.contentsOfDirectory(atPath: output.path)) ?? []
        if contents.isEmpty { return }
        guard overwrite else {
            throw TrainingError(.output, file: output.path, reason: "the output folder exists and is not empty (allow overwriting to replace it)")
        }
        guard contents.contains("config.json") else {
            throw TrainingError(.output, file: output.path,
                                reason: "refusing to replace a non-empty folder that is not a model folder (it has no config.json)")
        }
    }

    /// Writes the base checkpoint's encoder with a new head (the head's tensors by their
    /// table names) and `config`.
    public static func write(base: PretrainedCheckpoint, config: CedConfig, head: [String: Tensor], to output: URL,
                             overwrite: Bool = false, extraFiles: [String: Data] = [:]) throws {
        try checkOutput(output, overwrite: overwrite)
        try config.validate()
        var tensors: [String: Tensor] = [:]
        for (name, t) in base.weights.tensors where CedParameterTable.isEncoder(name) { tensors[name] = t }
        for (name, t) in head {
            guard CedParameterTable.isHead(name) else {
                throw TrainingError(.invalidOption, reason: "tensor '\(name)' is not one of the classification head's")
            }
            tensors[name] = t
        }
        try writeModel(config: config, featureExtractorConfig: base.featureExtractorConfig, weights: tensors,
                       baseConfig: baseFile("config.json", of: base), basePreprocessorConfig: baseFile("preprocessor_config.json", of: base),
                       to: output, overwrite: overwrite, extraFiles: extraFiles)
    }

    /// Writes a whole model (every tensor given) as a Hugging Face folder, atomically: the
    /// configuration JSON merged over `baseConfig` (keys `CedConfig` does not model, such as
    /// `auto_map`, are kept), the preprocessor JSON over `basePreprocessorConfig`.
    public static func writeModel(config: CedConfig, featureExtractorConfig: CedFeatureExtractorConfig, weights tensors: [String: Tensor],
                                  baseConfig: URL?, basePreprocessorConfig: URL?, to output: URL, overwrite: Bool = false,
                                  extraFiles: [String: Data] = [:]) throws {
        try checkOutput(output, overwrite: overwrite)
        try config.validate()
        // The result must load as a model (names and shapes as upstream for this outputdim).
        _ = try CedForAudioClassification(config: config, weights: StateDict(tensors: tensors, source: output.path))

        let configJSON = try mergedJSON(base: baseConfig, encoded: JSONEncoder().encode(config))
        var preprocessorExtras: [String: Any] = ["feature_extractor_type": "CedFeatureExtractor"]
        if featureExtractorConfig.topDb != 120 { preprocessorExtras["top_db"] = featureExtractorConfig.topDb }
        let preprocessorJSON = try mergedJSON(base: basePreprocessorConfig,
                                              encoded: JSONEncoder().encode(featureExtractorConfig), extra: preprocessorExtras)

        let fm = FileManager.default
        let parent = output.deletingLastPathComponent()
        let name = output.lastPathComponent
        let temp = parent.appendingPathComponent(".\(name).partial-\(UUID().uuidString)")
        do {
            try fm.createDirectory(at: parent, withIntermediateDirectories: true)
            try fm.createDirectory(at: temp, withIntermediateDirectories: false)
        } catch {
            throw TrainingError(.output, file: output.path, reason: "cannot create the output folder (\(error.localizedDescription))")
        }
        var committed = false
        defer { if !committed { try? fm.removeItem(at: temp) } }
        do {
            try configJSON.write(to: temp.appendingPathComponent("config.json"))
            try preprocessorJSON.write(to: temp.appendingPathComponent("preprocessor_config.json"))
            try writeSafeTensors(tensors, config: config, to: temp.appendingPathComponent("model.safetensors"))
            for (file, data) in extraFiles.sorted(by: { $0.key < $1.key }) {
                try data.write(to: temp.appendingPathComponent(file))
            }
        } catch let e as TrainingError {
            throw e
        } catch {
            throw TrainingError(.output, file: output.path, reason: "cannot write the model (\(error.localizedDescription))")
        }
        try moveIntoPlace(temp, output, overwrite: overwrite)
        committed = true
    }

    /// Renames `temp` to `output`: directly when `output` is absent or an empty folder,
    /// else (overwrite) by moving the old folder aside first and deleting it afterwards.
    static func moveIntoPlace(_ temp: URL, _ output: URL, overwrite: Bool) throws {
        func fail(_ what: String) -> TrainingError {
            TrainingError(.output, file: output.path, reason: "\(what) (\(String(cString: strerror(errno))))")
        }
        if rename(temp.path, output.path) == 0 { return }
        guard errno == ENOTEMPTY || errno == EEXIST, overwrite else { throw fail("cannot move the finished model into place") }
        let aside = output.deletingLastPathComponent().appendingPathComponent(".\(output.lastPathComponent).old-\(UUID().uuidString)")
        guard rename(output.path, aside.path) == 0 else { throw fail("cannot move the existing folder aside") }
        guard rename(temp.path, output.path) == 0 else {
            let e = fail("cannot move the finished model into place")
            _ = rename(aside.path, output.path)
            throw e
        }
        try? FileManager.default.removeItem(at: aside)
    }

    /// The base checkpoint's copy of a JSON file, when it came from a folder or the hub.
    static func baseFile(_ name: String, of base: PretrainedCheckpoint) -> URL? {
        let candidate: URL?
        switch base.origin {
        case .directory(let dir): candidate = dir.appendingPathComponent(name)
        case .file(let file): candidate = file.deletingLastPathComponent().appendingPathComponent(name)
        case .hub(_, _, _, let files): candidate = files.first { $0.lastPathComponent == name }
        }
        guard let c = candidate, FileManager.default.fileExists(atPath: c.path) else { return nil }
        if name == "config.json", case .given = base.configSource { return nil }
        return c
    }

    /// The base JSON object (if readable) overlaid with `encoded`'s keys and `extra`
    /// (only where absent), pretty-printed with sorted keys.
    static func mergedJSON(base: URL?, encoded: Data, extra: [String: Any] = [:]) throws -> Data {
        var object: [String: Any] = [:]
        if let base, let data = try? Data(contentsOf: base),
           let parsed = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
            object = parsed
        }
        guard let ours = try JSONSerialization.jsonObject(with: encoded) as? [String: Any] else {
            throw TrainingError(.output, reason: "internal error: a configuration did not encode as a JSON object")
        }
        for (k, v) in ours { object[k] = v }
        for (k, v) in extra where object[k] == nil { object[k] = v }
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
    }

    /// `model.safetensors` as `transformers` writes it: `__metadata__` `{"format": "pt"}`,
    /// float32 data, the BatchNorm's step counter as int64 (the dtype PyTorch gives it).
    static func writeSafeTensors(_ tensors: [String: Tensor], config: CedConfig, to url: URL) throws {
        let counter = CedParameterTable(config: config).initBN.batchesTracked.name
        let dtypes = tensors[counter] == nil ? [:] : [counter: SafeTensorsDType.i64]
        try SafeTensorsFile.write(tensors, dtypes: dtypes, metadata: ["format": "pt"], to: url)
    }
}
