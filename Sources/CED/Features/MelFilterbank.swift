import Foundation

/// The fixed tensors of torchaudio's `MelSpectrogram`: its analysis window and its mel
/// filterbank (the buffers a checkpoint stores as `front_end.0.spectrogram.window` and
/// `front_end.0.mel_scale.fb`).
enum MelFrontEndTensors {
    /// `torch.hann_window(length, periodic=True)` in float32.
    ///
    /// Follows torch's own float32 recipe, `0.5 − 0.5·cos(i·float(2π/length))` with the
    /// product taken in float32 (torch computes `arange(length+1)·(2π/length)` in float32 and
    /// drops the last point). The cosine itself is evaluated correctly rounded here, while torch
    /// uses a SIMD approximation, so an element can differ from torch's by one float32 ulp
    /// (≤ 6e-8). A length-1 window is `[1]`, as in torch.
    static func periodicHann(_ length: Int) -> [Float] {
        precondition(length >= 1)
        if length == 1 { return [1] }
        let step = Float(2 * Double.pi / Double(length))
        return (0..<length).map { i in
            let angle = Float(i) * step
            let c = Float(cos(Double(angle)))
            return c * -0.5 + 0.5
        }
    }

    /// HTK mel scale, `2595·log10(1 + f/700)`.
    static func hzToMel(_ hz: Double) -> Double { 2595 * log10(1 + hz / 700) }

    /// Inverse of `hzToMel`, `700·(10^(m/2595) − 1)`.
    static func melToHz(_ mel: Double) -> Double { 700 * (pow(10, mel / 2595) - 1) }

    /// `torchaudio.functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sample_rate,
    /// norm=None, mel_scale="htk")`, row-major `[nFreqs, nMels]`.
    ///
    /// Frequencies of the STFT bins are `linspace(0, sample_rate // 2, n_freqs)` (torchaudio's
    /// convention, integer half rate), the `n_mels + 2` filter edges are equally spaced on the
    /// HTK mel scale between `f_min` and `f_max`, and filter `m` is the triangle
    /// `max(0, min((f − e[m])/(e[m+1] − e[m]), (e[m+2] − f)/(e[m+2] − e[m+1])))` without area
    /// normalisation. The arithmetic is float64, rounded to float32 at the end; torch does it in
    /// float32 with SIMD `linspace`/`pow` whose last bits depend on the CPU's vector width, so the
    /// result lies within about 1e-5 of any torch-built buffer (measured: 5.2e-6 against the
    /// `front_end.0.mel_scale.fb` of the reference checkpoint), not bit-identical to it.
    static func melFilterbank(nFreqs: Int, fMin: Double, fMax: Double, nMels: Int,
                              sampleRate: Int) -> [Float] {
        let halfRate = Double(sampleRate / 2)
        let freqs: [Double] = (0..<nFreqs).map { k in
            nFreqs == 1 ? 0 : halfRate * Double(k) / Double(nFreqs - 1)
        }
        let mMin = hzToMel(fMin), mMax = hzToMel(fMax)
        var edges: [Double] = (0..<(nMels + 2)).map { i in
            melToHz(mMin + (mMax - mMin) * Double(i) / Double(nMels + 1))
        }
        // The round trip Hz → mel → Hz is off by an ulp or so; pin the outer edges to their exact
        // values so a bin at exactly f_min or f_max gets weight 0 (as in torch's float32 result
        // for the CED default), not 1e-15.
        edges[0] = fMin
        edges[nMels + 1] = fMax
        var fb = [Float](repeating: 0, count: nFreqs * nMels)
        for m in 0..<nMels {
            let lo = edges[m], mid = edges[m + 1], hi = edges[m + 2]
            let down = mid - lo, up = hi - mid
            for k in 0..<nFreqs {
                let f = freqs[k]
                let rising = (f - lo) / down
                let falling = (hi - f) / up
                let v = max(0, min(rising, falling))
                // Degenerate (zero-width) filters from absurd n_mels give NaN here: keep them 0.
                fb[k * nMels + m] = v.isFinite ? Float(v) : 0
            }
        }
        return fb
    }
}
