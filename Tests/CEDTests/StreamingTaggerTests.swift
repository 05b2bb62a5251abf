import XCTest
@testable import CED

/// The threaded streaming tagger gives exactly the windows and scores of the synchronous file
/// path, whatever the input rate and block sizes; it drops only when told to; it ends cleanly.
final class StreamingTaggerTests: XCTestCase {
    static let recording: EventRecording? = try? EventRecording.make(seconds: 24, seed: 7, gaps: 2...6, differentPairs: false)

    func recording() throws -> EventRecording {
        _ = try Reference.require()
        return try XCTUnwrap(Self.recording)
    }

    /// What the synchronous scorer gives for 16 kHz samples.
    func reference(_ tagger: CedAudioTagger, _ x: [Float], _ w: CedWindowing) throws -> [CedWindowResult] {
        let scorer = try CedAudioTagger.WindowScorer(tagger: tagger, windowing: w)
        var out: [CedWindowResult] = []
        try scorer.append(x) { out.append($0) }
        try scorer.finish { out.append($0) }
        return out
    }

    func assertSame(_ a: [CedWindowResult], _ b: [CedWindowResult], file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        for (x, y) in zip(a, b) {
            XCTAssertEqual(x.index, y.index, file: file, line: line)
            XCTAssertEqual(x.start, y.start, file: file, line: line)
            XCTAssertEqual(x.end, y.end, file: file, line: line)
            XCTAssertEqual(x.scores.scalars, y.scores.scalars, "window \(x.index)", file: file, line: line)
        }
    }

    func testPushPullEqualsFilePathAt44kHz() throws {
        let tagger = try StreamingEventTests.teacher()
        let x16 = try recording().samples
        // The input at 44.1 kHz: what the stream resamples must equal resampling it whole.
        let x44 = try SincResampler.resample(x16, from: 16000, to: 44100)
        let expected = try reference(tagger, try SincResampler.resample(x44, from: 44100, to: 16000), try tagger.windowing(window: 2, hop: 0.5))
        XCTAssertEqual(expected.count, 45)   // (24 − 2) / 0.5 + 1 regular windows
        let stream = try CedStreamingTagger(tagger: tagger, inputSampleRate: 44100,
                                            options: .init(window: 2, hop: 0.5, whenBehind: .wait, maxBufferedResults: 3))
        var rng = TrainingRandom(seed: 3)
        let producer = Thread {
            var i = 0
            while i < x44.count {
                let n = min(x44.count - i, 1 + rng.nextInt(below: 30000))
                try! stream.append(Array(x44[i ..< i + n]))
                i += n
            }
            stream.finish()
        }
        producer.start()
        var got: [CedWindowResult] = []
        while let r = try stream.next() { got.append(r) }
        assertSame(got, expected)
        XCTAssertEqual(stream.statistics.droppedWindows, 0)
        XCTAssertEqual(stream.statistics.windowsScored, expected.count)
        XCTAssertTrue(stream.isFinished)
        XCTAssertNil(try stream.next())
        XCTAssertThrowsError(try stream.append([0])) { XCTAssertEqual(($0 as? StreamingError)?.kind, .inputEnded) }
    }

    func testAsyncSequenceAndEventsEqualTheFilePath() async throws {
        let tagger = try StreamingEventTests.teacher()
        let x = try recording().samples
        let w = try tagger.windowing(window: 2, hop: 0.5)
        let expected = try reference(tagger, x, w)
        // Stereo interleaved input: both channels equal, so the mean is the signal itself.
        let stereo = x.flatMap { [$0, $0] }
        let stream = try CedStreamingTagger(tagger: tagger, inputSampleRate: 16000, options: .init(window: 2, hop: 0.5, whenBehind: .wait))
        Thread {
            for start in stride(from: 0, to: stereo.count, by: 2 * 4000) {
                let block = Array(stereo[start ..< min(stereo.count, start + 2 * 4000)])
                try! block.withUnsafeBufferPointer { try stream.append(interleaved: $0, channels: 2) }
            }
            stream.finish()
        }.start()
        var got: [CedWindowResult] = []
        for try await r in stream { got.append(r) }
        assertSame(got, expected)

        let options = try CedEventOptions(classCount: 4, threshold: 0.7, minDuration: 0.5, mergeGap: 0.5)
        let fileEvents = try tagger.events(in: x, windowing: w, events: options).events
        XCTAssertFalse(fileEvents.isEmpty)
        let live = try CedStreamingTagger(tagger: tagger, inputSampleRate: 16000, options: .init(window: 2, hop: 0.5, whenBehind: .wait))
        let events = try live.events(options)
        Thread {
            for start in stride(from: 0, to: x.count, by: 1234) { try! live.append(Array(x[start ..< min(x.count, start + 1234)])) }
            live.finish()
        }.start()
        var liveEvents: [CedEvent] = []
        for try await e in events { liveEvents.append(e) }
        XCTAssertEqual(CedAudioTagger.sorted(liveEvents), fileEvents)
    }

    func testDropsWindowsWhenBehindAndCountsThem() throws {
        let tagger = try StreamingEventTests.teacher()
        let x = try recording().samples
        let w = try tagger.windowing(window: 2, hop: 0.5)
        let expected = try reference(tagger, x, w)
        // All 24 s at once: the worker featurises 45 windows in one go, keeps the newest 2.
        let stream = try CedStreamingTagger(tagger: tagger, inputSampleRate: 16000,
                                            options: .init(window: 2, hop: 0.5, whenBehind: .dropWindows, maxQueuedWindows: 2,
                                                           maxPendingSeconds: 60))
        try stream.append(x)
        stream.finish()
        var got: [CedWindowResult] = []
        while let r = try stream.next() { got.append(r) }
        let stats = stream.statistics
        XCTAssertGreaterThan(stats.droppedWindows, 0)
        XCTAssertEqual(got.count + stats.droppedWindows, expected.count, "every window is scored or counted as dropped")
        // What is delivered is exact, in order, with true times.
        let byIndex = Dictionary(uniqueKeysWithValues: expected.map { ($0.index, $0) })
        XCTAssertEqual(got.map(\.index), got.map(\.index).sorted())
        for r in got {
            let e = try XCTUnwrap(byIndex[r.index])
            XCTAssertEqual(r.start, e.start)
            XCTAssertEqual(r.scores.scalars, e.scores.scalars)
        }
        XCTAssertEqual(got.last?.index, expected.last?.index, "the newest windows are kept")
    }

    func testCancelErrorsAndOptions() throws {
        let tagger = try StreamingEventTests.teacher()
        let stream = try CedStreamingTagger(tagger: tagger, inputSampleRate: 48000)
        XCTAssertThrowsError(try stream.append([0, 0, .nan])) {
            XCTAssertTrue("\($0)".contains("sample 2"), "\($0)")
        }
        try stream.append([Float](repeating: 0.01, count: 48000))
        stream.cancel()
        XCTAssertNil(try stream.next())
        XCTAssertThrowsError(try stream.append([0])) { XCTAssertEqual(($0 as? StreamingError)?.kind, .cancelled) }
        XCTAssertThrowsError(try CedStreamingTagger(tagger: tagger, inputSampleRate: 0)) {
            XCTAssertTrue("\($0)".contains("0 Hz"), "\($0)")
        }
        XCTAssertThrowsError(try CedStreamingTagger(tagger: tagger, inputSampleRate: 16000, options: .init(window: 11))) {
            XCTAssertTrue("\($0)".contains("target_length"), "\($0)")
        }
        // A stream with less than one window of input gives one window of all of it.
        let short = try CedStreamingTagger(tagger: tagger, inputSampleRate: 16000)
        try short.append([Float](repeating: 0.01, count: 8000))
        short.finish()
        let r = try XCTUnwrap(try short.next())
        XCTAssertEqual(r.start, 0)
        XCTAssertEqual(r.end, 0.5)
        XCTAssertEqual(r.scores.scalars, try tagger.scores([Float](repeating: 0.01, count: 8000)).scalars)
        XCTAssertNil(try short.next())
    }
}
