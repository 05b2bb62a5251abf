import Foundation

/// Feeds a stream reader into a streaming tagger on a thread of its own: blocks go in as they
/// arrive until the input ends, `maxFrames` frames have gone in, or `stop()` is called; then
/// the tagger is finished, so its last windows are scored and open events can be flushed.
/// What `ced listen` runs between a capture device or standard input and the model.
public final class CedStreamFeed: @unchecked Sendable {
    public let stream: CedStreamingTagger
    public let reader: AudioStreamReader
    /// Frames of input to take at most (nil: until the input ends).
    public let maxFrames: Int?
    private let lock = NSLock()
    private var _failure: Error?
    private var _stopped = false
    private var _firstAudio: Date?

    public init(stream: CedStreamingTagger, reader: AudioStreamReader, maxFrames: Int? = nil) {
        self.stream = stream
        self.reader = reader
        self.maxFrames = maxFrames
    }

    /// Why reading failed, if it did (the tagger was finished all the same).
    public var failure: Error? { lock.lock(); defer { lock.unlock() }; return _failure }
    /// Whether `stop()` ended the input.
    public var stopped: Bool { lock.lock(); defer { lock.unlock() }; return _stopped }
    /// When the first audio arrived.
    public var firstAudio: Date? { lock.lock(); defer { lock.unlock() }; return _firstAudio }

    /// Starts the reading thread.
    public func start() {
        let t = Thread { [self] in readLoop() }
        t.name = "ced.stream.feed"
        t.start()
    }

    /// Ends the input here: the reader stops and the tagger finishes. Returns false when the
    /// feed was already stopped.
    @discardableResult
    public func stop() -> Bool {
        lock.lock()
        let first = !_stopped
        _stopped = true
        lock.unlock()
        if first {
            reader.stop()
            stream.finish()
        }
        return first
    }

    private func readLoop() {
        var frames = 0
        do {
            while let block = try reader.read() {
                lock.lock()
                if _firstAudio == nil { _firstAudio = Date() }
                let stop = _stopped
                lock.unlock()
                if stop { break }
                if let maxFrames, frames + block.count >= maxFrames {
                    try stream.append(Array(block.prefix(maxFrames - frames)))
                    frames = maxFrames
                    break
                }
                frames += block.count
                try stream.append(block)
            }
        } catch let e as StreamingError where e.kind == .inputEnded || e.kind == .cancelled {
            // Stopped while appending: the stream is already finishing.
        } catch {
            lock.lock(); _failure = error; lock.unlock()
        }
        if maxFrames != nil { reader.stop() }
        stream.finish()
    }
}
