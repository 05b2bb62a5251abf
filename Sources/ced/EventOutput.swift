import ArgumentParser
import CED
import Foundation

// MARK: Event rules from the command line

/// The per-class rules of `--threshold`, `--thresholds CSV` and `--release`:
/// - without `--thresholds`, every class uses `--threshold` (default 0.5);
/// - with it, the classes it lists use their own threshold (and release, third column);
///   the others use `--threshold` when that is given, else they are not reported.
/// `--release` is the release threshold of every class that has none of its own, lowered to
/// the class's threshold where that is lower.
func eventOptions(config: CedConfig, threshold: Float?, thresholdsFile: String?, release: Float?,
                  minDuration: Double, mergeGap: Double, fill: Double, ongoing: Bool) throws -> CedEventOptions {
    if let t = threshold, !t.isFinite { throw ValidationError("--threshold must be a number") }
    if let r = release {
        guard r.isFinite else { throw ValidationError("--release must be a number") }
        if let t = threshold, r > t { throw ValidationError("--release (\(r)) must not be above --threshold (\(t))") }
        if thresholdsFile == nil && threshold == nil && r > 0.5 {
            throw ValidationError("--release (\(r)) must not be above the threshold (0.5 by default)")
        }
    }
    guard minDuration.isFinite, minDuration >= 0 else { throw ValidationError("--min-duration must be a non-negative number of seconds") }
    guard mergeGap.isFinite, mergeGap >= 0 else { throw ValidationError("--merge-gap must be a non-negative number of seconds") }
    guard fill.isFinite, fill >= 0, fill <= 1 else { throw ValidationError("--fill must be between 0 and 1") }
    let classThresholds = try thresholdsFile.map { path in
        do {
            return try CedEventOptions.classThresholds(from: URL(fileURLWithPath: path), labels: config.labels)
        } catch let e as CedFileError {
            throw ValidationError("--thresholds \(e)")
        }
    }
    return try CedEventOptions(classCount: config.outputdim, threshold: threshold, classThresholds: classThresholds, release: release,
                               minDuration: minDuration, mergeGap: mergeGap, fill: fill, reportOngoing: ongoing)
}
