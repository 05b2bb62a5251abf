import Foundation

/// Which naming a checkpoint's tensors use.
public enum CheckpointLayout: String, Sendable, Equatable {
    /// Hugging Face `CedForAudioClassification`: `encoder.*`, `outputlayer.*`.
    case huggingFace
    /// The authors' training repository (`AudioTransformer`): no `encoder.` prefix,
    /// `init_bn.1.*`, plus the mel front end's `front_end.*` buffers.
    case original
}

/// The mel front end buffers an original-layout checkpoint stores
/// (`front_end.0.spectrogram.window`, `front_end.0.mel_scale.fb`).
public struct StoredFrontEnd: Sendable, Equatable {
    /// The STFT window, `[win_length]`.
    public var window: Tensor?
    /// The mel filterbank, `[n_freqs, n_mels]` (torchaudio orientation).
    public var melFilterbank: Tensor?

    public init(window: Tensor? = nil, melFilterbank: Tensor? = nil) {
        self.window = window
        self.melFilterbank = melFilterbank
    }

    public var isEmpty: Bool { window == nil && melFilterbank == nil }
}

/// Everything about CED tensor names in one place: mapping the original layout onto the
/// Hugging Face one, the shapes a configuration implies, checking a state dict against
/// them, and inferring a configuration from shapes alone.
public enum CedWeightLayout {
    public static let windowKey = "front_end.0.spectrogram.window"
    public static let melFilterbankKey = "front_end.0.mel_scale.fb"

    /// The result of `toHuggingFace`.
    public struct Mapped: Sendable {
        /// Tensors under Hugging Face names.
        public var weights: StateDict
        public var layout: CheckpointLayout
        /// Front-end buffers found (original layout only).
        public var frontEnd: StoredFrontEnd
        /// Names that were dropped (other `front_end.*` buffers), as in the file.
        public var dropped: [String]
    }

    /// The Hugging Face name of an original-layout tensor, or nil for a front-end buffer:
    /// `init_bn.1.X` → `encoder.init_bn.X`, `outputlayer.*` unchanged, `front_end.*` → nil,
    /// anything else → `encoder.` + name.
    public static func huggingFaceName(forOriginal name: String) -> String? {
        if name.hasPrefix("front_end.") { return nil }
        if name.hasPrefix("outputlayer.") { return name }
        if name.hasPrefix("init_bn.1.") { return "encoder.init_bn." + name.dropFirst("init_bn.1.".count) }
        return "encoder." + name
    }

    /// Maps a state dict in either layout onto Hugging Face names. A common `module.`
    /// prefix (from `DataParallel`) is removed first. The layout is Hugging Face when any
    /// name starts with `encoder.`, original otherwise.
    public static func toHuggingFace(_ sd: StateDict) -> Mapped {
        var tensors = sd.tensors
        if !tensors.isEmpty, tensors.keys.allSatisfy({ $0.hasPrefix("module.") }) {
            tensors = Dictionary(uniqueKeysWithValues: tensors.map { (String($0.key.dropFirst("module.".count)), $0.value) })
        }
        if tensors.keys.contains(where: { $0.hasPrefix("encoder.") }) {
            // Hugging Face layout; a stray front end is set aside all the same.
            var frontEnd = StoredFrontEnd()
            var dropped: [String] = []
            for key in tensors.keys where key.hasPrefix("front_end.") || key.hasPrefix("encoder.front_end.") {
                let bare = key.hasPrefix("encoder.") ? String(key.dropFirst("encoder.".count)) : key
                if bare == windowKey { frontEnd.window = tensors[key] }
                else if bare == melFilterbankKey { frontEnd.melFilterbank = tensors[key] }
                else { dropped.append(key) }
                tensors[key] = nil
            }
            return Mapped(weights: StateDict(tensors: tensors, source: sd.source), layout: .huggingFace,
                          frontEnd: frontEnd, dropped: dropped.sorted())
        }
        var out: [String: Tensor] = [:]
        var frontEnd = StoredFrontEnd()
        var dropped: [String] = []
        for (key, t) in tensors {
            if let hf = huggingFaceName(forOriginal: key) {
                out[hf] = t
            } else if key == windowKey {
                frontEnd.window = t
            } else if key == melFilterbankKey {
                frontEnd.melFilterbank = t
            } else {
                dropped.append(key)
            }
        }
        return Mapped(weights: StateDict(tensors: out, source: sd.source), layout: .original, frontEnd: frontEnd,
                      dropped: dropped.sorted())
    }

    // MARK: Inference

    /// The upstream default chunk length; used when it fits the time embedding.
    public static let defaultTargetLength = 1012

    /// Infers a configuration from Hugging Face-named weight shapes (for checkpoints
    /// without a `config.json`):
    ///
    /// - `embed_dim` and `patch_size` from `encoder.patch_embed.proj.weight` `[E, 1, ph, pw]`;
    ///   `patch_stride` = `patch_size` (as in every published CED);
    /// - `depth` from the number of `encoder.blocks.N` (must be 0..<N);
    /// - `mlp_ratio` from `mlp.fc1.weight` `[H, E]`, `qkv_bias` from `attn.qkv.bias`;
    /// - `outputdim` from `outputlayer.1.weight`;
    /// - `n_mels` from `encoder.init_bn.weight` (64 when absent);
    /// - `target_length` = 1012 (the upstream default) when `1012 // stride` equals the
    ///   `time_pos_embed` length, else that length × stride;
    /// - `pooling` = `token` when `encoder.cls_token` exists, else `mean` (overridable:
    ///   `logit` and `dm` cannot be told from shapes);
    /// - `num_heads` = embed / 64 as in every published CED (overridable: shapes do not
    ///   determine it);
    /// - front end (`n_fft`, `win_size`) from the stored filterbank and window when given.
    public static func inferConfig(from weights: StateDict, frontEnd: StoredFrontEnd = StoredFrontEnd(),
                                   numHeads: Int? = nil, pooling: CedPooling? = nil) throws -> CedConfig {
        let file = weights.source
        func fail(_ reason: String, tensor: String? = nil) -> CheckpointError {
            CheckpointError(.architecture, file: file, tensor: tensor,
                            reason: reason + "; pass a config.json to describe the model")
        }
        func shape(_ name: String) throws -> [Int] {
            guard let t = weights.tensors[name] else { throw fail("cannot infer the architecture: tensor is missing", tensor: name) }
            return t.shape
        }
        var c = CedConfig()
        c.name = nil
        let pe = try shape("encoder.patch_embed.proj.weight")
        guard pe.count == 4, pe[1] == 1, pe[0] > 0, pe[2] > 0, pe[3] > 0 else {
            throw fail("patch embedding has shape \(pe), expected [embed, 1, patch_h, patch_w]", tensor: "encoder.patch_embed.proj.weight")
        }
        c.embedDim = pe[0]
        c.patchSize = CedPair(frequency: pe[2], time: pe[3])
        c.patchStride = c.patchSize

        var blocks = Set<Int>()
        for name in weights.tensors.keys where name.hasPrefix("encoder.blocks.") {
            let rest = name.dropFirst("encoder.blocks.".count)
            guard let n = Int(rest.prefix(while: { $0 != "." })) else { throw fail("unexpected block name", tensor: name) }
            blocks.insert(n)
        }
        guard !blocks.isEmpty else { throw fail("no transformer blocks (encoder.blocks.N.*) found") }
        guard blocks == Set(0..<blocks.count) else {
            throw fail("block indices \(blocks.sorted()) are not 0..<\(blocks.count)")
        }
        c.depth = blocks.count

        let fc1 = try shape("encoder.blocks.0.mlp.fc1.weight")
        guard fc1.count == 2, fc1[1] == c.embedDim, fc1[0] > 0 else {
            throw fail("fc1 has shape \(fc1), expected [hidden, \(c.embedDim)]", tensor: "encoder.blocks.0.mlp.fc1.weight")
        }
        c.mlpRatio = Double(fc1[0]) / Double(c.embedDim)
        if c.mlpHiddenDim != fc1[0] {
            throw fail("MLP width \(fc1[0]) is not int(embed × ratio) for any ratio", tensor: "encoder.blocks.0.mlp.fc1.weight")
        }
        c.qkvBias = weights.tensors["encoder.blocks.0.attn.qkv.bias"] != nil

        let out = try shape("outputlayer.1.weight")
        guard out.count == 2, out[1] == c.embedDim, out[0] > 0 else {
            throw fail("output layer has shape \(out), expected [classes, \(c.embedDim)]", tensor: "outputlayer.1.weight")
        }
        c.outputdim = out[0]

        if let bn = weights.tensors["encoder.init_bn.weight"] {
            guard bn.rank == 1, bn.count > 0 else { throw fail("init_bn has shape \(bn.shape)", tensor: "encoder.init_bn.weight") }
            c.nMels = bn.count
        }
        let fpe = try shape("encoder.freq_pos_embed")
        guard fpe.count == 4, fpe[1] == c.embedDim, fpe[3] == 1 else {
            throw fail("freq_pos_embed has shape \(fpe), expected [1, \(c.embedDim), F, 1]", tensor: "encoder.freq_pos_embed")
        }
        if c.frequencyPatches != fpe[2] {
            throw fail("\(c.nMels) mel bins with patch stride \(c.patchStride.frequency) give \(c.frequencyPatches) frequency patches, but freq_pos_embed has \(fpe[2])", tensor: "encoder.freq_pos_embed")
        }
        let tpe = try shape("encoder.time_pos_embed")
        guard tpe.count == 4, tpe[1] == c.embedDim, tpe[2] == 1, tpe[3] > 0 else {
            throw fail("time_pos_embed has shape \(tpe), expected [1, \(c.embedDim), 1, T]", tensor: "encoder.time_pos_embed")
        }
        let stride = c.patchStride.time
        c.targetLength = defaultTargetLength / stride == tpe[3] ? defaultTargetLength : tpe[3] * stride

        c.pooling = pooling ?? (weights.tensors["encoder.cls_token"] != nil ? .token : .mean)
        if let numHeads {
            c.numHeads = numHeads
        } else {
            c.numHeads = max(1, c.embedDim / 64)
            if c.embedDim % c.numHeads != 0 { c.numHeads = 1 }
        }

        if let fb = frontEnd.melFilterbank {
            guard fb.rank == 2, fb.shape[0] >= 2 else { throw fail("mel filterbank has shape \(fb.shape)", tensor: melFilterbankKey) }
            c.nFft = (fb.shape[0] - 1) * 2
            if fb.shape[1] != c.nMels {
                throw fail("the mel filterbank has \(fb.shape[1]) bands but init_bn normalises \(c.nMels)", tensor: melFilterbankKey)
            }
        }
        if let w = frontEnd.window {
            guard w.rank == 1, w.count > 0 else { throw fail("window has shape \(w.shape)", tensor: windowKey) }
            c.winSize = w.count
        }
        do {
            try c.validate()
        } catch let e as ConfigError {
            throw fail("the inferred configuration is invalid (\(e.description))")
        }
        return c
    }
}
