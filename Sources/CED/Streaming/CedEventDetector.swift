import Foundation

/// The scores of one window of a stream.
public struct CedWindowResult: Sendable {
    /// Window number from the stream's start (numbers missing in a live stream are windows
    /// that were dropped because the model could not keep up).
    public var index: Int
    /// Start and end in seconds from the stream's start.
    public var start: Double
    public var end: Double
    /// `[outputdim]` class scores of the window (sigmoid probabilities for the published models).
    public var scores: Tensor

    public init(index: Int, start: Double, end: Double, scores: Tensor) {
        self.index = index
        self.start = start
        self.end = end
        self.scores = scores
    }

    /// Midpoint of the window, the time its scores are taken to describe.
    public var center: Double { (start + end) / 2 }
}

/// One occurrence of a sound class: from its onset to its offset, with the scores of the
/// windows that found it.
public struct CedEvent: Sendable, Equatable, Codable {
    /// Output index of the class.
    public var index: Int
    /// Class name from the model's `id2label`.
    public var label: String
    /// Onset and offset in seconds from the start of the stream or file.
    public var start: Double
    public var end: Double
    /// The highest window score within the event.
    public var score: Float
    /// The mean score of the windows within the event.
    public var meanScore: Float
    /// Windows whose scores the event is made of.
    public var windowCount: Int
    /// True for an update about an event still going on (`end` is then the time it is known
    /// to last until); false for the final report, which comes once the event has ended.
    public var ongoing: Bool
    /// Numbers events in the order they are first reported, so that `ongoing` updates and
    /// the final report of one event carry the same id.
    public var id: Int

    public var duration: Double { end - start }

    enum CodingKeys: String, CodingKey {
        case index, label, start, end, score, meanScore = "mean_score", windowCount = "windows", ongoing, id
    }
}

/// When a class counts as present: a window score of at least `threshold` starts an event,
/// which goes on while scores stay at or above `release` (hysteresis; `release` ≤ `threshold`).
public struct CedEventRule: Sendable, Equatable {
    public var threshold: Float
    public var release: Float

    /// - Throws: `StreamingError.invalidOption` unless 0 ≤ release ≤ threshold and both are finite.
    public init(threshold: Float, release: Float? = nil) throws {
        let r = release ?? threshold
        guard threshold.isFinite, r.isFinite else {
            throw StreamingError(.invalidOption, "thresholds must be numbers, got \(threshold) and \(r)")
        }
        guard r <= threshold else {
            throw StreamingError(.invalidOption, "the release threshold \(r) is above the threshold \(threshold); it must be at most the threshold")
        }
        self.threshold = threshold
        self.release = r
    }
}

/// How window scores become events.
public struct CedEventOptions: Sendable, Equatable {
    /// The rule for each class (index = output index); nil: the class is never reported.
    public var rules: [CedEventRule?]
    /// Events shorter than this (seconds) are dropped (after merging).
    public var minDuration: Double
    /// Two events of one class separated by fewer than this many seconds of windows scoring
    /// below the release threshold become one.
    public var mergeGap: Double
    /// How much of a window a sound must fill before the window's score rises, as a
    /// fraction of the window: where onsets and offsets are placed (see `CedEventDetector`).
    /// 0.5 places them at window midpoints; CED models trained on weakly labelled clips
    /// react to a sound filling a small part of the window, hence the default 0.25.
    public var fill: Double
    /// Report `ongoing` updates of events that have lasted at least `minDuration`, one per
    /// window while they last (live streams).
    public var reportOngoing: Bool

    /// One rule for all `classCount` classes.
    public init(classCount: Int, threshold: Float = 0.5, release: Float? = nil, minDuration: Double = 0,
                mergeGap: Double = 0, fill: Double = 0.25, reportOngoing: Bool = false) throws {
        let rule = try CedEventRule(threshold: threshold, release: release)
        try self.init(rules: Array(repeating: rule, count: classCount), minDuration: minDuration,
                      mergeGap: mergeGap, fill: fill, reportOngoing: reportOngoing)
    }

    /// A rule per class (nil: not reported).
    public init(rules: [CedEventRule?], minDuration: Double = 0, mergeGap: Double = 0, fill: Double = 0.25,
                reportOngoing: Bool = false) throws {
        guard minDuration.isFinite, minDuration >= 0 else {
            throw StreamingError(.invalidOption, "the minimum duration must be a non-negative number of seconds, got \(minDuration)")
        }
        guard mergeGap.isFinite, mergeGap >= 0 else {
            throw StreamingError(.invalidOption, "the merge gap must be a non-negative number of seconds, got \(mergeGap)")
        }
        guard fill.isFinite, fill >= 0, fill <= 1 else {
            throw StreamingError(.invalidOption, "the fill fraction must be between 0 and 1, got \(fill)")
        }
        self.rules = rules
        self.minDuration = minDuration
        self.mergeGap = mergeGap
        self.fill = fill
        self.reportOngoing = reportOngoing
    }
}

/// Turns window scores, in stream order, into events: the same code for a file and for a
/// live stream, so both give the same events for the same audio.
///
/// Per class, independently:
/// - A **run** is a stretch of consecutive windows scoring at least the class's `release`;
///   it is an event if one of its windows reaches `threshold` (hysteresis: the event reaches
///   back to where the scores first rose above `release`, and lasts until they fall below it).
/// - **Times**: a window scores high once the sound fills a fraction `fill` of it. So the
///   first window of a run places the onset `fill` × its length before its end, the last one
///   places the offset `fill` × its length after its start, and between the last window
///   below and the first at or above the release the crossing is interpolated linearly (with
///   windows shifted by a hop, times are accurate to a fraction of the hop). A run that starts
///   with the stream starts at 0; one still going at the end ends with the stream. When a
///   run is too short for its onset to precede its offset, both are its midpoint.
/// - **Merging**: runs of one class separated by less than `mergeGap` of low-scoring windows
///   (measured between window midpoints, interpolated the same way) are one event. Then
///   events shorter than `minDuration` are dropped.
/// - `score` is the peak window score, `meanScore` the mean over the event's windows.
///
/// A final event is reported once it cannot change any more: its scores have fallen and no
/// later run can start within `mergeGap` of its end. So a live report comes about a window
/// length after the sound ends in the input, plus the merge gap.
public final class CedEventDetector {
    public let options: CedEventOptions
    private let labels: [String]
    private var classes: [ClassState]
    private var previous: Window?
    private var nextID = 0
    private var finished = false

    /// Windows processed so far.
    public private(set) var windowCount = 0

    /// A window's times: extent, midpoint, and where an onset / offset it marks lies.
    struct Window {
        var start: Double
        var end: Double
        var center: Double
        var onsetAnchor: Double
        var offsetAnchor: Double
    }

    /// An event's extent in two clocks: window midpoints (for merging) and placed times
    /// (reported).
    struct Span {
        var mid: (start: Double, end: Double)
        var start: Double
        var end: Double
    }

    struct Run {
        var span: Span
        var peak: Float
        var sum: Double
        var count: Int
        var confirmed: Bool
        /// The run's latest window and its score.
        var last: Window
        var lastScore: Float
    }

    struct Pending {
        var span: Span
        var peak: Float
        var sum: Double
        var count: Int
        var id: Int?
    }

    struct ClassState {
        var rule: CedEventRule?
        var previousScore: Float = 0
        var run: Run?
        /// An event that has ended but may still merge with the next one.
        var pending: Pending?
        /// Id of the open run once an ongoing update reported it.
        var runID: Int?
    }

    /// A detector for the classes of `config` (labels from its `id2label`).
    /// - Throws: `StreamingError.invalidOption` when `options.rules` does not have one entry
    ///   per output class.
    public init(options: CedEventOptions, config: CedConfig) throws {
        guard options.rules.count == config.outputdim else {
            throw StreamingError(.invalidOption, "the event options have \(options.rules.count) class rules but the model has \(config.outputdim) classes")
        }
        self.options = options
        labels = (0..<config.outputdim).map { config.label(for: $0) }
        classes = options.rules.map { ClassState(rule: $0) }
    }

    /// Feeds the next window's scores (windows must come in time order); returns the events
    /// that ended for good with it, and `ongoing` updates when those are enabled.
    /// - Throws: `StreamingError.invalidOption` for a score vector of the wrong length or
    ///   a window that does not come after the previous one; `CedInputError` for a NaN score.
    public func process(_ window: CedWindowResult) throws -> [CedEvent] {
        guard !finished else { throw StreamingError(.inputEnded, "window processed after finish()") }
        let scores = window.scores.scalars
        guard scores.count == classes.count else {
            throw StreamingError(.invalidOption, "window \(window.index) has \(scores.count) scores but the detector expects \(classes.count)")
        }
        guard window.end > window.start, window.start.isFinite, window.end.isFinite else {
            throw StreamingError(.invalidOption, "window \(window.index) has no extent (\(window.start)–\(window.end) s)")
        }
        if let p = previous, !(window.center > p.center && window.start >= p.start) {
            throw StreamingError(.invalidOption, "window \(window.index) (\(window.start)–\(window.end) s) does not come after the previous window (\(p.start)–\(p.end) s)")
        }
        if let bad = scores.firstIndex(where: { $0.isNaN }) {
            throw CedInputError("window \(window.index) has a NaN score for class \(bad)")
        }
        let length = window.end - window.start
        let w = Window(start: window.start, end: window.end, center: window.center,
                       onsetAnchor: window.end - options.fill * length, offsetAnchor: window.start + options.fill * length)
        var out: [CedEvent] = []
        for c in classes.indices where classes[c].rule != nil {
            step(c, score: scores[c], window: w, out: &out)
        }
        previous = w
        windowCount += 1
        return out
    }

    /// Ends the stream: events still open end with the last window; everything not yet
    /// reported is returned (final reports only).
    public func finish() -> [CedEvent] {
        guard !finished else { return [] }
        finished = true
        var out: [CedEvent] = []
        for c in classes.indices where classes[c].rule != nil {
            if let run = classes[c].run {
                let end = run.last.end
                close(c, run: run, mid: end, end: end, out: &out)
            }
            if let p = classes[c].pending { emit(c, p, out: &out) }
            classes[c].pending = nil
        }
        return out
    }

    /// Events going on now (onset known, `end` = as far as the windows show it so far),
    /// whatever their duration so far: for a live display. They are not yet final.
    public var activeEvents: [CedEvent] {
        var out: [CedEvent] = []
        for c in classes.indices {
            guard let run = classes[c].run, run.confirmed else { continue }
            let merged = soFar(c, run)
            out.append(event(c, merged, ongoing: true, id: merged.id ?? -1))
        }
        return out.sorted { $0.start < $1.start }
    }

    // MARK: Per class

    private func step(_ c: Int, score s: Float, window w: Window, out: inout [CedEvent]) {
        let rule = classes[c].rule!
        if s >= rule.release {
            if classes[c].run == nil {
                var span = Span(mid: (w.start, w.start), start: w.start, end: w.start)
                if let p = previous {
                    let f = fraction(classes[c].previousScore, s, rule.release)
                    let mid = min(w.center, max(max(p.center, w.start), p.center + f * (w.center - p.center)))
                    let placed = p.onsetAnchor + f * (w.onsetAnchor - p.onsetAnchor)
                    span = Span(mid: (mid, mid), start: placed, end: placed)
                }
                classes[c].run = Run(span: span, peak: s, sum: 0, count: 0, confirmed: false, last: w, lastScore: s)
                classes[c].runID = nil
            }
            classes[c].run!.peak = max(classes[c].run!.peak, s)
            classes[c].run!.sum += Double(s)
            classes[c].run!.count += 1
            classes[c].run!.last = w
            classes[c].run!.lastScore = s
            if s >= rule.threshold { classes[c].run!.confirmed = true }
        } else if let run = classes[c].run {
            let f = fraction(run.lastScore, s, rule.release)
            let last = run.last
            let mid = min(last.end, last.center + f * (w.center - last.center))
            let placed = last.offsetAnchor + f * (w.offsetAnchor - last.offsetAnchor)
            close(c, run: run, mid: mid, end: placed, out: &out)
        }
        classes[c].previousScore = s

        // A pending event is final once no run can start within the merge gap after it.
        if let p = classes[c].pending {
            let horizon = p.span.mid.end + options.mergeGap
            let blocked = classes[c].run.map { $0.span.mid.start < horizon } ?? false
            if !blocked && w.center >= horizon {
                emit(c, p, out: &out)
                classes[c].pending = nil
            }
        }
        if options.reportOngoing, let run = classes[c].run, run.confirmed {
            var merged = soFar(c, run)
            if merged.span.end - merged.span.start >= options.minDuration {
                let id = merged.id ?? takeID()
                merged.id = id
                if mergesWithPending(c, run) { classes[c].pending!.id = id }
                classes[c].runID = id
                out.append(event(c, merged, ongoing: true, id: id))
            }
        }
    }

    /// Where between two scores `a` → `b` the level is crossed, as a fraction in [0, 1].
    private func fraction(_ a: Float, _ b: Float, _ level: Float) -> Double {
        guard a != b else { return 0.5 }
        return min(1, max(0, (Double(level) - Double(a)) / (Double(b) - Double(a))))
    }

    private func mergesWithPending(_ c: Int, _ run: Run) -> Bool {
        guard let p = classes[c].pending else { return false }
        return run.span.mid.start - p.span.mid.end < options.mergeGap
    }

    /// The event an open run makes so far (with the pending event it will merge into).
    private func soFar(_ c: Int, _ run: Run) -> Pending {
        var span = run.span
        span.mid.end = run.last.center
        span.end = run.last.offsetAnchor
        let own = Pending(span: span, peak: run.peak, sum: run.sum, count: run.count, id: classes[c].runID)
        guard mergesWithPending(c, run), let p = classes[c].pending else { return own }
        return merge(p, own)
    }

    private func merge(_ a: Pending, _ b: Pending) -> Pending {
        Pending(span: Span(mid: (a.span.mid.start, b.span.mid.end), start: a.span.start, end: b.span.end),
                peak: max(a.peak, b.peak), sum: a.sum + b.sum, count: a.count + b.count, id: a.id ?? b.id)
    }

    private func close(_ c: Int, run: Run, mid: Double, end: Double, out: inout [CedEvent]) {
        classes[c].run = nil
        let runID = classes[c].runID
        classes[c].runID = nil
        guard run.confirmed else { return }
        var span = run.span
        span.mid.end = max(mid, span.mid.start)
        span.end = end
        let e = Pending(span: span, peak: run.peak, sum: run.sum, count: run.count, id: runID)
        if let p = classes[c].pending {
            if e.span.mid.start - p.span.mid.end < options.mergeGap {
                classes[c].pending = merge(p, e)
                return
            }
            emit(c, p, out: &out)
        }
        classes[c].pending = e
    }

    private func emit(_ c: Int, _ p: Pending, out: inout [CedEvent]) {
        let e = event(c, p, ongoing: false, id: 0)
        guard e.end - e.start >= options.minDuration else { return }
        out.append(event(c, p, ongoing: false, id: p.id ?? takeID()))
    }

    private func takeID() -> Int {
        defer { nextID += 1 }
        return nextID
    }

    private func event(_ c: Int, _ p: Pending, ongoing: Bool, id: Int) -> CedEvent {
        var start = p.span.start, end = p.span.end
        if end < start { start = (start + end) / 2; end = start }
        return CedEvent(index: c, label: labels[c], start: start, end: end, score: p.peak,
                        meanScore: Float(p.sum / Double(max(1, p.count))), windowCount: p.count, ongoing: ongoing, id: id)
    }
}
