import Foundation

/// An Audacity label track per recording: `start\tend\tlabel` per event (tabs in labels become spaces).
public struct CedAudacityEncoder: CedResultEncoder {
    public init() {}

    public func encode(_ result: CedEventResult, position: Int) -> String {
        result.events.map {
            String(format: "%.6f\t%.6f\t", $0.start, $0.end) + $0.label.replacingOccurrences(of: "\t", with: " ") + "\n"
        }.joined()
    }
}

/// A Raven selection table per recording (tab-separated, one selection per event, spanning
/// `lowFrequency`–`highFrequency`), as BirdNET writes them.
public struct CedRavenEncoder: CedResultEncoder {
    public var lowFrequency: Double
    public var highFrequency: Double

    public init(lowFrequency: Double, highFrequency: Double) {
        self.lowFrequency = lowFrequency
        self.highFrequency = highFrequency
    }

    public func encode(_ result: CedEventResult, position: Int) -> String {
        var s = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation\tClass Index\t"
            + "Confidence\tMean Confidence\n"
        for (i, e) in result.events.enumerated() {
            s += "\(i + 1)\tSpectrogram 1\t1\t" + String(format: "%.3f\t%.3f\t", e.start, e.end)
                + String(format: "%.1f\t%.1f\t", lowFrequency, highFrequency) + e.label.replacingOccurrences(of: "\t", with: " ")
                + "\t\(e.index)\t\(CedJSONText.number(e.score))\t\(CedJSONText.number(e.meanScore))\n"
        }
        return s
    }
}
