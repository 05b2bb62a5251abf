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

/// The other checkpoint layouts mapped onto the Hugging Face names of
/// `CedParameterTable` (mlx-swift-lm's `sanitize`): the authors' training repository
/// (`AudioTransformer`, no `encoder.` prefix, `init_bn.1.*`, the mel front end's
/// buffers), a bare Hugging Face `CedModel` (no `encoder.` prefix), and `DataParallel`'s
/// `module.` prefix.
public enum CedWeightLayout {
    public static let windowKey = "front_end.0.spectrogram.window"
    public static let melFilterbankKey = "front_end.0.mel_scale.fb"

    /// The result of `sanitize`.
    public struct Mapped: Sendable {
        /// Tensors under Hugging Face names.
        public var weights: StateDict
        public var layout: CheckpointLayout
        /// Front-end buffers found (original layout only).
        public var frontEnd: StoredFrontEnd
        /// Names that were dropped (other `front_end.*` buffers), as in the file.
        public var dropped: [String]
    }

    /// The Hugging Face name of an original-layout (or bare `CedModel`) tensor, or nil for
    /// a front-end buffer: `init_bn.1.X` → `encoder.init_bn.X`, `outputlayer.*`
    /// unchanged, `front_end.*` → nil, anything else → `encoder.` + name.
    public static func huggingFaceName(forOriginal name: String) -> String? {
        if name.hasPrefix("front_end.") { return nil }
        if name.hasPrefix("outputlayer.") { return name }
        if name.hasPrefix("init_bn.1.") { return "encoder.init_bn." + name.dropFirst("init_bn.1.".count) }
        return "encoder." + name
    }

    /// Maps a state dict in any layout onto Hugging Face names. A common `module.`
    /// prefix (from `DataParallel`) is removed first. The layout is Hugging Face when any
    /// name starts with `encoder.`, original (or a bare encoder) otherwise.
    public static func sanitize(_ sd: StateDict) -> Mapped {
        var names = sd.names
        var sd = sd
        if !names.isEmpty, names.allSatisfy({ $0.hasPrefix("module.") }) {
            sd = sd.renamed { String($0.dropFirst("module.".count)) }
            names = sd.names
        }
        var frontEnd = StoredFrontEnd()
        var dropped: [String] = []
        if names.contains(where: { $0.hasPrefix("encoder.") }) {
            // Hugging Face layout; a stray front end is set aside all the same.
            let weights = sd.renamed { key in
                guard key.hasPrefix("front_end.") || key.hasPrefix("encoder.front_end.") else { return key }
                let bare = key.hasPrefix("encoder.") ? String(key.dropFirst("encoder.".count)) : key
                if bare == windowKey { frontEnd.window = sd[key] }
                else if bare == melFilterbankKey { frontEnd.melFilterbank = sd[key] }
                else { dropped.append(key) }
                return nil
            }
            return Mapped(weights: weights, layout: .huggingFace, frontEnd: frontEnd, dropped: dropped.sorted())
        }
        let weights = sd.renamed { key in
            if let hf = huggingFaceName(forOriginal: key) { return hf }
            if key == windowKey { frontEnd.window = sd[key] }
            else if key == melFilterbankKey { frontEnd.melFilterbank = sd[key] }
            else { dropped.append(key) }
            return nil
        }
        return Mapped(weights: weights, layout: .original, frontEnd: frontEnd, dropped: dropped.sorted())
    }
}
