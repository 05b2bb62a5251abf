import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A small persistent thread pool for splitting one kernel call across the cores.
///
/// One caller at a time owns the pool; a caller that finds it busy (another thread is in
/// the middle of a GEMM) simply runs its tasks itself, so concurrent use is safe, never
/// deadlocks and never oversubscribes. Workers spin briefly (yielding) after a job so
/// back-to-back GEMMs of a forward pass do not pay a futex wake-up each time.
final class ComputePool: @unchecked Sendable {
    static let shared = ComputePool()

    /// Extra threads besides the caller (active processors − 1).
    let workerCount: Int

    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private let workCond: UnsafeMutablePointer<pthread_cond_t>
    private let doneCond: UnsafeMutablePointer<pthread_cond_t>
    // All fields below are guarded by `mutex`.
    private var busy = false
    private var generation = 0
    /// The current job: `invoke(context, i)` runs task i. The context points at the
    /// caller's task value (on its stack) for the duration of `run`.
    private var invoke: (UnsafeRawPointer, Int) -> Void = ComputePool.idle
    private var context: UnsafeRawPointer?
    private static let idle: (UnsafeRawPointer, Int) -> Void = { _, _ in }
    private var taskCount = 0
    /// Unclaimed tasks are `nextTask..<lastTask`: the caller takes them from the front,
    /// workers from the back, so with two threads each core gets the same half of the
    /// output on every call (its cache lines stay put) while still balancing load.
    private var nextTask = 0
    private var lastTask = 0
    private var finished = 0
    private var allowedWorkers = 0
    private var sleepers = 0
    private var waitingCaller = false

    /// How long a caller busy-polls for its workers' last chunks before sleeping, and how
    /// long an idle worker polls for the next job before sleeping (a forward pass issues
    /// GEMMs every few µs to ms).
    private let busyWait = 100e-6
    private let yieldWait = 2e-3

    private static func monotonicSeconds() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }

    init(workers: Int = max(0, ProcessInfo.processInfo.activeProcessorCount - 1)) {
        workerCount = workers
        mutex = .allocate(capacity: 1)
        workCond = .allocate(capacity: 1)
        doneCond = .allocate(capacity: 1)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(workCond, nil)
        pthread_cond_init(doneCond, nil)
        for index in 0..<workers {
            let thread = Thread { [unowned self] in self.workerLoop(index) }
            thread.name = "ced-compute-\(index)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    /// Locks `mutex`, spinning on trylock first: the critical sections are a few
    /// instructions long, and a contended pthread mutex would otherwise put the thread to
    /// sleep in the kernel and cost a wake-up (several µs) for a lock held for nanoseconds.
    @inline(__always)
    private func lock() {
        var spins = 0
        while pthread_mutex_trylock(mutex) != 0 {
            spins += 1
            if spins >= 200 {
                pthread_mutex_lock(mutex)
                return
            }
        }
    }

    @inline(__always)
    private func unlock() { pthread_mutex_unlock(mutex) }

    /// Runs `task(0..<count)` on the caller plus up to `maxThreads − 1` workers and
    /// returns when every task has finished. Tasks must be independent.
    ///
    /// Allocation-free in optimized builds (the model's hot paths use this form): workers
    /// reach the task through a pointer to the caller's value and a capture-free,
    /// specialized invoker.
    func run<Task: ComputeTask>(_ count: Int, maxThreads: Int, _ task: Task) {
        if count <= 0 { return }
        let helpers = min(workerCount, maxThreads - 1, count - 1, CedCompute.threadLimit - 1)
        if helpers <= 0 {
            for i in 0..<count { task(i) }
            return
        }
        lock()
        if busy {
            unlock()
            for i in 0..<count { task(i) }
            return
        }
        busy = true
        withUnsafePointer(to: task) { pointer in
            runLocked(count, helpers: helpers, context: UnsafeRawPointer(pointer)) { raw, i in
                raw.assumingMemoryBound(to: Task.self).pointee(i)
            }
        }
        busy = false
        unlock()
    }

    /// `run` for a closure (one small allocation per call, from `withoutActuallyEscaping`:
    /// use a `ComputeTask` on hot paths).
    func run(_ count: Int, maxThreads: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            run(count, maxThreads: maxThreads, ClosureTask(body: body))
        }
    }

    private struct ClosureTask: ComputeTask {
        let body: (Int) -> Void
        func callAsFunction(_ i: Int) { body(i) }
    }

    /// With `mutex` held and `busy` set: publishes the job, works on it, waits for the
    /// workers, clears it.
    @inline(__always)
    private func runLocked(_ count: Int, helpers: Int, context: UnsafeRawPointer,
                           invoke: @escaping (UnsafeRawPointer, Int) -> Void) {
        self.invoke = invoke
        self.context = context
        taskCount = count
        nextTask = 0
        lastTask = count
        finished = 0
        allowedWorkers = helpers
        generation &+= 1
        if sleepers > 0 { pthread_cond_broadcast(workCond) }
        while claimAndRun(fromBack: false) {
            finished += 1
        }
        // The last chunks are running on workers: poll (they are usually microseconds
        // from done) before sleeping on the condition variable. No sched_yield here:
        // on a loaded machine it could hand this thread's core away for a whole
        // time slice.
        let waitStart = Self.monotonicSeconds()
        while finished < taskCount {
            if Self.monotonicSeconds() - waitStart < busyWait {
                unlock()
                for _ in 0..<32 { _ = pthread_self() }
                lock()
            } else {
                waitingCaller = true
                pthread_cond_wait(doneCond, mutex)
                waitingCaller = false
            }
        }
        self.invoke = ComputePool.idle
        self.context = nil
    }

    /// With `mutex` held: claims one task, runs it unlocked, re-locks. Returns false when
    /// no task is left. The closure reference is dropped before returning.
    @inline(never)
    private func claimAndRun(fromBack: Bool) -> Bool {
        guard nextTask < lastTask, let context else { return false }
        let body = invoke
        let i: Int
        if fromBack {
            lastTask -= 1
            i = lastTask
        } else {
            i = nextTask
            nextTask += 1
        }
        unlock()
        body(context, i)
        lock()
        return true
    }

    private func workerLoop(_ index: Int) {
        var seen = 0
        lock()
        while true {
            // Idle: poll with sched_yield until `yieldWait`, then sleep. Yielding (rather
            // than spinning) matters when the scheduler has put this worker on the
            // caller's core, or other processes want the CPU: they run instead, and on an
            // otherwise idle core sched_yield returns at once, so polling stays fast.
            var idleSince = -1.0
            while generation == seen || index >= allowedWorkers || nextTask >= lastTask {
                seen = generation
                let now = Self.monotonicSeconds()
                if idleSince < 0 { idleSince = now }
                if now - idleSince < yieldWait {
                    unlock()
                    sched_yield()
                    lock()
                } else {
                    sleepers += 1
                    pthread_cond_wait(workCond, mutex)
                    sleepers -= 1
                    idleSince = -1
                }
            }
            seen = generation
            while claimAndRun(fromBack: true) {
                finished += 1
                if finished == taskCount && waitingCaller { pthread_cond_signal(doneCond) }
            }
        }
    }
}

/// Work split into independent tasks `0..<count` for `ComputePool.run` (a value type, so
/// that handing it to the workers allocates nothing).
protocol ComputeTask {
    func callAsFunction(_ i: Int)
}

/// Reusable 64-byte-aligned scratch buffers (packing panels, padded edge rows), so a
/// GEMM call does not allocate in the steady state. Thread-safe.
final class ScratchPool: @unchecked Sendable {
    static let shared = ScratchPool()

    private struct Buffer { var pointer: UnsafeMutableRawPointer; var bytes: Int }
    private var free: [Buffer] = []
    private let lock = NSLock()
    private let maxKept = 16

    /// Calls `body` with at least `count` floats of scratch memory (contents undefined).
    func withFloats<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let bytes = max(64, count * MemoryLayout<Float>.stride)
        var buffer: Buffer
        lock.lock()
        if let i = free.lastIndex(where: { $0.bytes >= bytes }) {
            buffer = free.remove(at: i)
            lock.unlock()
        } else if !free.isEmpty {
            buffer = free.removeLast()
            lock.unlock()
            buffer.pointer.deallocate()
            buffer = Buffer(pointer: .allocate(byteCount: bytes, alignment: 64), bytes: bytes)
        } else {
            lock.unlock()
            buffer = Buffer(pointer: .allocate(byteCount: bytes, alignment: 64), bytes: bytes)
        }
        defer {
            lock.lock()
            if free.count < maxKept {
                free.append(buffer)
                lock.unlock()
            } else {
                lock.unlock()
                buffer.pointer.deallocate()
            }
        }
        return try body(buffer.pointer.bindMemory(to: Float.self, capacity: bytes / 4))
    }
}

/// Compute settings of the calling thread.
public enum CedCompute {
    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// The most threads a model call made on this thread uses (all cores unless limited
    /// by `withThreadLimit`).
    public static var threadLimit: Int {
        let raw = Int(bitPattern: pthread_getspecific(key))
        return raw > 0 ? raw : ComputePool.shared.workerCount + 1
    }

    /// Each of `workers` concurrent callers' share of this thread's limit (at least 1).
    public static func threadsPerWorker(_ workers: Int) -> Int {
        max(1, threadLimit / max(1, workers))
    }

    /// Runs `body` with model calls on this thread using at most `threads` threads (1: the
    /// calling thread only). For applications that run several models or clips at once
    /// on their own threads: with one thread each, N concurrent callers on N cores do not
    /// compete for the shared compute pool. Nests; the previous limit is restored after.
    public static func withThreadLimit<R>(_ threads: Int, _ body: () throws -> R) rethrows -> R {
        let previous = pthread_getspecific(key)
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: max(1, threads)))
        defer { pthread_setspecific(key, previous) }
        return try body()
    }

    /// Runs `body(i)` for `i` in `0..<count` on `workers` threads (the caller among them),
    /// items claimed in order, each thread's model calls limited to its share of the cores
    /// (`threadsPerWorker`). Once `body` returns false, no further items are started.
    static func forEachConcurrently(_ count: Int, workers: Int, _ body: @Sendable (Int) -> Bool) {
        final class Claims: @unchecked Sendable {
            let lock = NSLock()
            var next = 0
            var stopped = false
        }
        let claims = Claims()
        let threads = threadsPerWorker(workers)
        DispatchQueue.concurrentPerform(iterations: max(1, min(workers, count))) { _ in
            withThreadLimit(threads) {
                while true {
                    claims.lock.lock()
                    let i = claims.next
                    claims.next += 1
                    let stop = claims.stopped || i >= count
                    claims.lock.unlock()
                    if stop { return }
                    if !body(i) {
                        claims.lock.lock()
                        claims.stopped = true
                        claims.lock.unlock()
                    }
                }
            }
        }
    }
}
