import Foundation

extension CedCompute {
    /// Runs `produce` for items `0..<count` on up to `jobs` threads, at most `lookahead` items
    /// ahead of the consumer, and hands the results to `consume` in index order on the calling
    /// thread (so output order and memory are both bounded and deterministic). Each worker's
    /// model calls use its share of the cores (`threadsPerWorker`): with two jobs on two cores,
    /// two single-threaded encoders instead of two callers competing for the compute pool.
    public static func forEachInOrder<T>(count: Int, jobs: Int, lookahead: Int, produce: @escaping @Sendable (Int) -> T,
                                         consume: (Int, T) -> Void) {
        guard count > 0 else { return }
        let state = OrderedState<T>()
        let workers = max(1, min(jobs, count))
        let threadsPerJob = threadsPerWorker(workers)
        let lookahead = max(1, lookahead)
        let group = DispatchGroup()
        for _ in 0..<workers {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                while true {
                    state.cond.lock()
                    while state.nextStart < count && state.nextStart - state.consumed >= lookahead { state.cond.wait() }
                    guard state.nextStart < count else { state.cond.unlock(); return }
                    let i = state.nextStart
                    state.nextStart += 1
                    state.cond.unlock()
                    let r = withThreadLimit(threadsPerJob) { produce(i) }
                    state.cond.lock()
                    state.results[i] = r
                    state.cond.broadcast()
                    state.cond.unlock()
                }
            }
        }
        for i in 0..<count {
            state.cond.lock()
            while state.results[i] == nil { state.cond.wait() }
            let r = state.results.removeValue(forKey: i)!
            state.consumed = i + 1
            state.cond.broadcast()
            state.cond.unlock()
            consume(i, r)
        }
        group.wait()
    }
}

private final class OrderedState<T>: @unchecked Sendable {
    let cond = NSCondition()
    var nextStart = 0
    var consumed = 0
    var results: [Int: T] = [:]
}
