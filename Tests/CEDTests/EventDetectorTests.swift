import XCTest
@testable import CED

/// The event rules on hand-made window scores, with expected times worked out by hand.
final class EventDetectorTests: XCTestCase {
    /// A one-class model config (the detector only needs labels and the class count).
    func config(classes: Int = 1) -> CedConfig {
        var c = CedConfig()
        c.outputdim = classes
        c.id2label = Dictionary(uniqueKeysWithValues: (0..<classes).map { ($0, "c\($0)") })
        return c
    }

    /// Windows of 2 s every 0.5 s: window k covers [0.5k, 0.5k + 2].
    func windows(_ scores: [Float]) -> [CedWindowResult] {
        scores.enumerated().map { k, s in
            CedWindowResult(index: k, start: 0.5 * Double(k), end: 0.5 * Double(k) + 2, scores: Tensor(shape: [1], scalars: [s]))
        }
    }

    /// Events with the window index after which each was reported.
    func run(_ scores: [Float], _ options: CedEventOptions) throws -> [(CedEvent, Int)] {
        let d = try CedEventDetector(options: options, config: config())
        var out: [(CedEvent, Int)] = []
        for w in windows(scores) { out += try d.process(w).map { ($0, w.index) } }
        out += d.finish().map { ($0, scores.count) }
        return out
    }

    func testOnsetAndOffsetPlacement() throws {
        let scores: [Float] = [0, 0, 0, 0, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0, 0, 0]
        // fill 0.25: an onset lies 0.5 s before a window's end, an offset 0.5 s after its start.
        // Onset between windows 3 and 4 (anchors 3.0 and 3.5) where 0 → 0.9 crosses 0.5: 3 + 0.5·5/9.
        // Offset between windows 9 and 10 (anchors 5.0 and 5.5): 5 + 0.5·4/9.
        var events = try run(scores, try CedEventOptions(classCount: 1, threshold: 0.5))
        XCTAssertEqual(events.count, 1)
        let e = events[0].0
        XCTAssertEqual(e.start, 3 + 0.5 * 5 / 9, accuracy: 1e-6)
        XCTAssertEqual(e.end, 5 + 0.5 * 4 / 9, accuracy: 1e-6)
        XCTAssertEqual(e.score, 0.9)
        XCTAssertEqual(e.meanScore, 0.9, accuracy: 1e-7)
        XCTAssertEqual(e.windowCount, 6)
        XCTAssertFalse(e.ongoing)
        XCTAssertEqual(events[0].1, 10, "reported with the first window below the threshold")
        // fill 0.5: window midpoints (2.5 → 3.0 and 5.5 → 6.0).
        events = try run(scores, try CedEventOptions(classCount: 1, threshold: 0.5, fill: 0.5))
        XCTAssertEqual(events[0].0.start, 2.5 + 0.5 * 5 / 9, accuracy: 1e-6)
        XCTAssertEqual(events[0].0.end, 5.5 + 0.5 * 4 / 9, accuracy: 1e-6)
    }

    func testStreamEdges() throws {
        // Active from the first window to the last: the event spans the whole stream.
        let e = try run([0.8, 0.9, 0.8], try CedEventOptions(classCount: 1, threshold: 0.5))
        XCTAssertEqual(e.count, 1)
        XCTAssertEqual(e[0].0.start, 0)
        XCTAssertEqual(e[0].0.end, 3)
        XCTAssertEqual(e[0].1, 3, "flushed by finish()")
        XCTAssertEqual(e[0].0.meanScore, (0.8 + 0.9 + 0.8) / 3, accuracy: 1e-6)
    }

    func testHysteresis() throws {
        let scores: [Float] = [0, 0.6, 0.8, 0.6, 0.6, 0.2, 0, 0.6, 0.65, 0]
        // Without a release threshold only window 2 reaches 0.7: too short to place (onset
        // 1.5 + 0.5·0.7/0.8 − ... after the offset), so it collapses to a point.
        var events = try run(scores, try CedEventOptions(classCount: 1, threshold: 0.7))
        XCTAssertEqual(events.count, 1)
        XCTAssertEqual(events[0].0.duration, 0)
        // Release 0.5: windows 1–4 (0.6 reaches the release) form the event; windows 7–8 never
        // reach the threshold and are no event.
        events = try run(scores, try CedEventOptions(classCount: 1, threshold: 0.7, release: 0.5))
        XCTAssertEqual(events.count, 1)
        let e = events[0].0
        // Onset: anchors 1.5 (window 0) → 2.0 (window 1), 0 → 0.6 crosses 0.5 at 5/6.
        XCTAssertEqual(e.start, 1.5 + 0.5 * 5 / 6, accuracy: 1e-6)
        // Offset: anchors 2.5 (window 4) → 3.0 (window 5), 0.6 → 0.2 crosses 0.5 at 1/4.
        XCTAssertEqual(e.end, 2.5 + 0.5 * 0.25, accuracy: 1e-6)
        XCTAssertEqual(e.windowCount, 4)
        XCTAssertEqual(e.score, 0.8)
        XCTAssertThrowsError(try CedEventRule(threshold: 0.5, release: 0.6))
    }

    func testMergeGapAndMinimumDuration() throws {
        // Two runs (windows 2–7 and 9–14) with one low window between them.
        var scores = [Float](repeating: 0, count: 18)
        for k in 2...7 { scores[k] = 1 }
        for k in 9...14 { scores[k] = 1 }
        // Crossings at the middle of each step (0 ↔ 1 at 0.5). In midpoint time the gap runs
        // from 4.75 (between midpoints 4.5 and 5.0) to 5.25: 0.5 s.
        var events = try run(scores, try CedEventOptions(classCount: 1, threshold: 0.5, mergeGap: 0.5))
        XCTAssertEqual(events.count, 2, "a gap of exactly the merge gap is not merged")
        events = try run(scores, try CedEventOptions(classCount: 1, threshold: 0.5, mergeGap: 0.51))
        XCTAssertEqual(events.count, 1)
        let e = events[0].0
        XCTAssertEqual(e.start, 2.25)        // anchors 2.0 → 2.5
        XCTAssertEqual(e.end, 7.75)          // anchors 7.5 → 8.0
        XCTAssertEqual(e.windowCount, 12)
        // Reported once no later run can merge: the first window whose midpoint is at least
        // 8.25 (the merged run's midpoint end) + 0.51, i.e. window 16 (midpoint 9.0).
        XCTAssertEqual(events[0].1, 16)
        // Placed times: each run alone lasts 2.25 → 4.25 and 5.75 → 7.75 = 2 s; a minimum of
        // 2.1 s drops both, but not the merged 5.5 s event.
        XCTAssertEqual(try run(scores, try CedEventOptions(classCount: 1, threshold: 0.5, minDuration: 2.1)).count, 0)
        XCTAssertEqual(try run(scores, try CedEventOptions(classCount: 1, threshold: 0.5, minDuration: 2)).count, 2)
        XCTAssertEqual(try run(scores, try CedEventOptions(classCount: 1, threshold: 0.5, minDuration: 2.1, mergeGap: 1)).count, 1)
    }

    func testOngoingUpdates() throws {
        var scores = [Float](repeating: 0, count: 20)
        for k in 2...12 { scores[k] = 1 }
        let events = try run(scores, try CedEventOptions(classCount: 1, threshold: 0.5, minDuration: 1, reportOngoing: true))
        let ongoing = events.filter { $0.0.ongoing }, final = events.filter { !$0.0.ongoing }
        XCTAssertEqual(final.count, 1)
        XCTAssertFalse(ongoing.isEmpty)
        // Every update: same id and onset as the final report, end growing by one hop, and
        // only once the event has lasted the minimum duration.
        for (i, (u, k)) in ongoing.enumerated() {
            XCTAssertEqual(u.id, final[0].0.id)
            XCTAssertEqual(u.start, final[0].0.start)
            XCTAssertEqual(u.end, 0.5 * Double(k) + 0.5, "the latest window's offset anchor")
            XCTAssertGreaterThanOrEqual(u.duration, 1)
            if i > 0 { XCTAssertEqual(k, ongoing[i - 1].1 + 1) }
        }
        XCTAssertEqual(ongoing.last!.1, 12)
        XCTAssertGreaterThan(final[0].0.end, ongoing.last!.0.end)
    }

    func testClassesAreIndependentAndRulesPerClass() throws {
        let d = try CedEventDetector(options: try CedEventOptions(rules: [try CedEventRule(threshold: 0.5), nil, try CedEventRule(threshold: 0.9)]),
                                     config: config(classes: 3))
        var out: [CedEvent] = []
        for k in 0..<12 {
            let on: Float = (3...7).contains(k) ? 0.8 : 0
            out += try d.process(CedWindowResult(index: k, start: 0.5 * Double(k), end: 0.5 * Double(k) + 2,
                                                 scores: Tensor(shape: [3], scalars: [on, on, on])))
        }
        out += d.finish()
        XCTAssertEqual(out.map(\.index), [0], "class 1 has no rule, class 2 never reaches 0.9")
        XCTAssertEqual(out[0].label, "c0")
    }

    func testBadInput() throws {
        let d = try CedEventDetector(options: try CedEventOptions(classCount: 1), config: config())
        XCTAssertThrowsError(try d.process(CedWindowResult(index: 0, start: 0, end: 2, scores: Tensor(shape: [2], scalars: [0, 0]))))
        _ = try d.process(CedWindowResult(index: 0, start: 1, end: 3, scores: Tensor(shape: [1], scalars: [0])))
        XCTAssertThrowsError(try d.process(CedWindowResult(index: 1, start: 0.5, end: 2.5, scores: Tensor(shape: [1], scalars: [0])))) {
            XCTAssertTrue("\($0)".contains("does not come after"), "\($0)")
        }
        XCTAssertThrowsError(try d.process(CedWindowResult(index: 2, start: 2, end: 4, scores: Tensor(shape: [1], scalars: [.nan])))) {
            XCTAssertTrue("\($0)".contains("NaN"), "\($0)")
        }
        XCTAssertThrowsError(try CedEventDetector(options: try CedEventOptions(classCount: 2), config: config()))
        XCTAssertThrowsError(try CedEventOptions(classCount: 1, fill: 1.5))
        XCTAssertThrowsError(try CedEventOptions(classCount: 1, mergeGap: -1))
    }
}
