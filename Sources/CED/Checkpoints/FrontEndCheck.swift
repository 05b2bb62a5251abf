import Foundation

/// How a stored front end compares with the expected one.
public struct FrontEndComparison: Sendable, Equatable {
    /// Largest |stored − expected| of the window, nil when no window is stored.
    public var windowMaxAbsDifference: Double?
    /// Largest |stored − expected| of the filterbank, nil when none is stored.
    public var melFilterbankMaxAbsDifference: Double?
    /// Problems found (shape or value mismatches); empty when the buffers match.
    public var mismatches: [String]

    public var matches: Bool { mismatches.isEmpty }

    /// Tolerances: torch computes the buffers in float32 with CPU-dependent SIMD rounding,
    /// so they differ from the feature extractor's by ~6e-8 (window) and ~5e-6
    /// (filterbank); a different setting (window length, f_max, mel scale, norm) differs
    /// by far more.
    public static let windowTolerance = 1e-5
    public static let melFilterbankTolerance = 1e-4
}

extension StoredFrontEnd {
    /// Compares the stored buffers with the window and mel filterbank `extractor` uses.
    public func compare(with extractor: CedFeatureExtractor) -> FrontEndComparison {
        let c = extractor.config
        return compare(window: extractor.window.scalars.map(Double.init),
                       melFilterbank: extractor.melFilterbank.scalars.map(Double.init),
                       shape: extractor.melFilterbank.shape,
                       settings: "win_size \(c.winSize), n_fft \(c.nFft), \(c.featureSize) mels, f_min \(c.fMin), f_max \(c.resolvedFMax), \(c.samplingRate) Hz")
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
