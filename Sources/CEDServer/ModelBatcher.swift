import CED
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Dynamic batching: the model calls of concurrent requests and streams (a clip, a file's
/// windows, a stream's windows) wait in one queue; a single worker thread takes everything
/// waiting (up to `maxBatch` spectrograms) and runs it as one model call, clips side by side
/// (`CedForAudioClassification.callAsFunction(_:chunking:)`, each result bit-identical to
/// running it alone). While a call runs, the next batch gathers, so a busy server batches
/// without waiting; when requests are on their way to the model (decoding) the worker waits
/// at most `maxWait` for them to join. One model call at a time also keeps concurrent
/// requests from fighting over the cores.
final class ModelBatcher: CedModelScheduler, @unchecked Sendable {
    let maxBatch: Int
    let maxWait: Double
    private let cond = NSCondition()
    private var queue: [Job] = []
    private var stopped = false
    /// Requests decoding their audio, on their way to their first model call: the next
    /// batch waits (at most `maxWait`) for them.
    private var decoding = 0
    /// Marks the thread of a request that has not yet reached the model.
    private static let approaching = ThreadMarker()
    private let observe: @Sendable (_ batchSize: Int, _ queueDepth: Int) -> Void

    private final class Job {
        let mels: [Tensor]
        let chunking: CedChunking
        let model: CedForAudioClassification
        var result: Result<[Tensor], Error>?
        init(mels: [Tensor], chunking: CedChunking, model: CedForAudioClassification) {
            self.mels = mels
            self.chunking = chunking
            self.model = model
        }
    }

    /// - Parameter observe: called with each batch's size (spectrograms) and the queue left.
    init(maxBatch: Int, maxWait: Double, observe: @escaping @Sendable (Int, Int) -> Void = { _, _ in }) {
        self.maxBatch = max(1, maxBatch)
        self.maxWait = max(0, maxWait)
        self.observe = observe
        let thread = Thread { [self] in run() }
        thread.name = "ced.serve.model"
        thread.qualityOfService = .userInitiated
        thread.start()
    }

    /// Spectrograms waiting for the model.
    var queueDepth: Int {
        cond.lock(); defer { cond.unlock() }
        return queue.reduce(0) { $0 + $1.mels.count }
    }

    /// Runs a request's work (on the calling thread): while it decodes, before its first
    /// model call, the batcher knows it is coming.
    func request<T>(_ work: () throws -> T) rethrows -> T {
        cond.lock(); decoding += 1; cond.unlock()
        Self.approaching.set(true)
        defer {
            if Self.approaching.get() { arrived() }
            Self.approaching.set(false)
        }
        return try work()
    }

    private func arrived() {
        Self.approaching.set(false)
        cond.lock(); decoding = max(0, decoding - 1); cond.broadcast(); cond.unlock()
    }

    func scores(_ mels: [Tensor], chunking: CedChunking, model: CedForAudioClassification) throws -> [Tensor] {
        if mels.isEmpty { return [] }
        let job = Job(mels: mels, chunking: chunking, model: model)
        if Self.approaching.get() { arrived() }
        cond.lock()
        if stopped {
            cond.unlock()
            return try model(mels, chunking: chunking)
        }
        queue.append(job)
        cond.broadcast()
        while job.result == nil { cond.wait() }
        cond.unlock()
        return try job.result!.get()
    }

    /// Stops the worker once the queue is empty (later calls run the model directly).
    func shutdown() {
        cond.lock()
        stopped = true
        cond.broadcast()
        cond.unlock()
    }

    private func run() {
        while true {
            cond.lock()
            while queue.isEmpty && !stopped { cond.wait() }
            if queue.isEmpty && stopped { cond.unlock(); return }
            // Requests still decoding may join, for at most maxWait.
            if maxWait > 0 && decoding > 0 && count(queue) < maxBatch {
                let deadline = Date(timeIntervalSinceNow: maxWait)
                while decoding > 0 && count(queue) < maxBatch && !stopped {
                    if !cond.wait(until: deadline) { break }
                }
            }
            // Everything of the first job's kind, up to maxBatch spectrograms (a job is never split).
            let first = queue[0]
            var batch: [Job] = [], taken = 0, rest: [Job] = []
            for job in queue {
                if job.model === first.model && job.chunking == first.chunking && (batch.isEmpty || taken + job.mels.count <= maxBatch) {
                    batch.append(job)
                    taken += job.mels.count
                } else {
                    rest.append(job)
                }
            }
            queue = rest
            let depth = count(queue)
            cond.unlock()

            observe(taken, depth)
            let mels = batch.flatMap(\.mels)
            let result = Result { try first.model(mels, chunking: first.chunking) }
            cond.lock()
            switch result {
            case .success(let scores):
                var offset = 0
                for job in batch {
                    job.result = .success(Array(scores[offset ..< offset + job.mels.count]))
                    offset += job.mels.count
                }
            case .failure:
                // One bad spectrogram must not fail the others: run each job alone.
                cond.unlock()
                let each = batch.map { job in Result { try job.model(job.mels, chunking: job.chunking) } }
                cond.lock()
                for (job, r) in zip(batch, each) { job.result = r }
            }
            cond.broadcast()
            cond.unlock()
        }
    }

    private func count(_ jobs: [Job]) -> Int { jobs.reduce(0) { $0 + $1.mels.count } }
}

/// Threads for blocking work (decoding, ffmpeg, waiting for the model), so that it never
/// runs on the server's event loops or Swift's cooperative threads. Threads are started as
/// work needs them (at most `threads`), and the most recently idle one takes the next item:
/// a steady load keeps using the same few threads (and their memory).
final class BlockingPool: @unchecked Sendable {
    private let lock = NSLock()
    private var work: [() -> Void] = []
    private var head = 0
    private var idle: [Worker] = []
    private var started = 0
    private let limit: Int
    private var stopped = false

    private final class Worker {
        let wake = DispatchSemaphore(value: 0)
    }

    init(threads: Int) { limit = max(1, threads) }

    /// Runs `body` on a pool thread.
    func run<T>(_ body: @escaping () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, Error>) in
            submit { c.resume(with: Result { try body() }) }
        }
    }

    private func submit(_ item: @escaping () -> Void) {
        lock.lock()
        work.append(item)
        if let w = idle.popLast() {
            lock.unlock()
            w.wake.signal()
        } else if started < limit {
            started += 1
            let n = started
            lock.unlock()
            let thread = Thread { [self] in loop(Worker()) }
            thread.name = "ced.serve.worker-\(n)"
            thread.start()
        } else {
            lock.unlock()   // every thread is busy: the next one free takes it
        }
    }

    func shutdown() {
        lock.lock()
        stopped = true
        let sleeping = idle
        idle = []
        lock.unlock()
        for w in sleeping { w.wake.signal() }
    }

    private func loop(_ me: Worker) {
        while true {
            lock.lock()
            if head < work.count {
                let item = work[head]
                head += 1
                if head > 256 && head * 2 > work.count {
                    work.removeFirst(head)
                    head = 0
                }
                lock.unlock()
                item()
                continue
            }
            if stopped { lock.unlock(); return }
            idle.append(me)
            lock.unlock()
            me.wake.wait()
        }
    }
}

/// A per-thread flag.
final class ThreadMarker: @unchecked Sendable {
    private var key = pthread_key_t()
    init() { pthread_key_create(&key, nil) }
    func get() -> Bool { pthread_getspecific(key) != nil }
    func set(_ on: Bool) { pthread_setspecific(key, on ? UnsafeRawPointer(bitPattern: 1) : nil) }
}
