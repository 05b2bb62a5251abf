import Foundation

/// Independent float64 reference of the mel front end the original checkpoints store,
/// used to check `front_end.0.spectrogram.window` and `front_end.0.mel_scale.fb`
/// against the settings the feature extractor will use.
///
/// This is computed here, not taken from the feature extractor, on purpose: the check
/// must not depend on the code it is checking. When the feature extractor exposes its
/// own `window` and `melFilterbank`, `StoredFrontEnd.compare(window:melFilterbank:)`
/// compares the stored buffers with those as well.
public enum CedFrontEndReference {
    /// torch.hann_window(length, periodic=True): 0.5 − 0.5·cos(2πn/length).
    public static func periodicHannWindow(length: Int) -> [Double] {
        (0..<length).map { 0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(length)) }
    }

    static func hzToMel(_ f: Double) -> Double { 2595 * log10(1 + f / 700) }
    static func melToHz(_ m: Double) -> Double { 700 * (pow(10, m / 2595) - 1) }

    /// torchaudio.functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate,
    /// norm=None, mel_scale="htk"): triangular filters, `[n_freqs, n_mels]` row-major.
    public static func htkMelFilterbank(nFreqs: Int, fMin: Double, fMax: Double, nMels: Int, sampleRate: Int) -> [Double] {
        let nyquist = Double(sampleRate / 2)
        let freqs = (0..<nFreqs).map { nFreqs == 1 ? 0 : nyquist * Double($0) / Double(nFreqs - 1) }
        let mMin = hzToMel(fMin), mMax = hzToMel(fMax)
        let pts = (0..<(nMels + 2)).map { melToHz(mMin + (mMax - mMin) * Double($0) / Double(nMels + 1)) }
        var fb = [Double](repeating: 0, count: nFreqs * nMels)
        for i in 0..<nFreqs {
            for m in 0..<nMels {
                let down = (freqs[i] - pts[m]) / (pts[m + 1] - pts[m])
                let up = (pts[m + 2] - freqs[i]) / (pts[m + 2] - pts[m + 1])
                fb[i * nMels + m] = max(0, min(down, up))
            }
        }
        return fb
    }
}

/// How a stored front end compares with the expected one.
public struct FrontEndComparison: Sendable, Equatable {
    /// Largest |stored − expected| of the window, nil when no window is stored.
    public var windowMaxAbsDifference: Double?
    /// Largest |stored − expected| of the filterbank, nil when none is stored.
    public var melFilterbankMaxAbsDifference: Double?
    /// Problems found (shape or value mismatches); empty when the buffers match.
    public var mismatches: [String]

    public var matches: Bool { mismatches.isEmpty }

    /// Tolerances: the buffers are computed in float32 by torch, so they differ from a
    /// float64 reference by ~1e-7 (window) and ~5e-6 (filterbank); a different setting
    /// (window length, f_max, mel scale, norm) differs by far more.
    public static let windowTolerance = 1e-5
    public static let melFilterbankTolerance = 1e-4
}

extension StoredFrontEnd {
    /// Compares the stored buffers with the front end `config` describes, computed by
    /// `CedFrontEndReference` (periodic Hann window of `win_size`, HTK mel filterbank of
    /// `n_fft / 2 + 1` frequencies, `feature_size` bands, `f_min`…`f_max`, no norm).
    public func compare(with config: CedFeatureExtractorConfig) -> FrontEndComparison {
        let window = CedFrontEndReference.periodicHannWindow(length: config.winSize)
        let nFreqs = config.nFft / 2 + 1
        let fb = CedFrontEndReference.htkMelFilterbank(nFreqs: nFreqs, fMin: config.fMin, fMax: config.resolvedFMax,
                                                       nMels: config.featureSize, sampleRate: config.samplingRate)
        return compare(window: window, melFilterbank: fb, shape: [nFreqs, config.featureSize],
                       settings: "win_size \(config.winSize), n_fft \(config.nFft), \(config.featureSize) mels, f_min \(config.fMin), f_max \(config.resolvedFMax), \(config.samplingRate) Hz")
    }

    /// Compares the stored buffers with a window and a `[n_freqs, n_mels]` filterbank
    /// computed elsewhere (the hook for the feature extractor's own `window` and
    /// `melFilterbank`).
    public func compare(window: [Float], melFilterbank: Tensor) -> FrontEndComparison {
        compare(window: window.map(Double.init), melFilterbank: melFilterbank.scalars.map(Double.init),
                shape: melFilterbank.shape, settings: "the feature extractor's")
    }

    func compare(window: [Double], melFilterbank: [Double], shape: [Int], settings: String) -> FrontEndComparison {
        var result = FrontEndComparison(windowMaxAbsDifference: nil, melFilterbankMaxAbsDifference: nil, mismatches: [])
        if let w = self.window {
            if w.shape != [window.count] {
                result.mismatches.append("\(CedWeightLayout.windowKey) has shape \(w.shape), the front end (\(settings)) uses a window of \(window.count)")
            } else {
                let d = zip(w.scalars, window).map { abs(Double($0) - $1) }.max() ?? 0
                result.windowMaxAbsDifference = d
                if !(d <= FrontEndComparison.windowTolerance) {
                    result.mismatches.append("\(CedWeightLayout.windowKey) differs from the periodic Hann window (\(settings)) by up to \(d)")
                }
            }
        }
        if let fb = self.melFilterbank {
            if fb.shape != shape {
                result.mismatches.append("\(CedWeightLayout.melFilterbankKey) has shape \(fb.shape), the front end (\(settings)) uses \(shape)")
            } else {
                let d = zip(fb.scalars, melFilterbank).map { abs(Double($0) - $1) }.max() ?? 0
                result.melFilterbankMaxAbsDifference = d
                if !(d <= FrontEndComparison.melFilterbankTolerance) {
                    result.mismatches.append("\(CedWeightLayout.melFilterbankKey) differs from the HTK mel filterbank (\(settings)) by up to \(d)")
                }
            }
        }
        return result
    }
}
