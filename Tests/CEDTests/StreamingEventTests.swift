import XCTest
@testable import CED

/// Events from the real 4-class tagger of the shared fixtures on an assembled recording.
final class StreamingEventTests: XCTestCase {
    static func teacher() throws -> CedAudioTagger {
        try CedAudioTagger.fromPretrained(try Reference.require().appendingPathComponent("distill/teacher-synth4").path)
    }

    func testAssembledRecordingF1() throws {
        let tagger = try Self.teacher()
        let recording = try EventRecording.make(gaps: 2...6, differentPairs: false)
        let windowing = try tagger.windowing(window: 2, hop: 0.5)
        let options = try CedEventOptions(classCount: 4, threshold: 0.7, minDuration: 0.5, mergeGap: 0.5)
        let t0 = Date()
        let found = try tagger.events(in: recording.samples, windowing: windowing, events: options)
        let detected = found.events.map { EventRecording.Truth(label: $0.label, start: $0.start, end: $0.end) }
        let score = EventRecording.f1(truth: recording.events, detected: detected)
        print("assembled 240 s: \(recording.events.count) true events, \(detected.count) found, F1 \(score.f1) (P \(score.precision), R \(score.recall)), \(found.windowCount) windows in \(Date().timeIntervalSince(t0)) s")
        for t in recording.events { print("  truth \(t.label) \(t.start) – \(t.end)") }
        for d in found.events { print("  found \(d.label) \(d.start) – \(d.end) peak \(d.score) mean \(d.meanScore)") }
        XCTAssertGreaterThanOrEqual(score.f1, 0.85)
    }
}
