import Foundation

/// A growable, 64-byte-aligned float buffer that keeps its memory between uses.
struct ScratchBuffer {
    private(set) var pointer: UnsafeMutablePointer<Float>
    private(set) var capacity: Int

    init() {
        capacity = 16
        pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64).bindMemory(to: Float.self, capacity: capacity)
    }

    /// At least `count` floats (contents undefined after growth).
    mutating func reserve(_ count: Int) -> UnsafeMutablePointer<Float> {
        reserve(count, keeping: 0)
    }

    /// At least `count` floats, the first `keep` of which are kept across growth.
    mutating func reserve(_ count: Int, keeping keep: Int) -> UnsafeMutablePointer<Float> {
        if count > capacity {
            let old = pointer
            capacity = max(count, capacity * 3 / 2)
            pointer = UnsafeMutableRawPointer.allocate(byteCount: capacity * 4, alignment: 64).bindMemory(to: Float.self, capacity: capacity)
            pointer.update(from: old, count: keep)
            UnsafeMutableRawPointer(old).deallocate()
        }
        return pointer
    }

    func free() { UnsafeMutableRawPointer(pointer).deallocate() }
}

/// The activations of one encoder forward pass. Reused across calls, so a steady stream of
/// clips of similar length allocates nothing in the model path.
final class EncoderWorkspace {
    /// `[rows, C]` residual stream.
    var x = ScratchBuffer()
    /// `[rows, C]` LayerNorm output.
    var normed = ScratchBuffer()
    /// `[rows, 3C]` fused q, k, v.
    var qkv = ScratchBuffer()
    /// `[rows, C]` attention output before `proj`.
    var context = ScratchBuffer()
    /// `[rows, mlp]` MLP hidden layer.
    var hidden = ScratchBuffer()
    /// `[chunks, n_mels, frames]` BatchNorm-ed chunk planes.
    var planes = ScratchBuffer()
    /// `[patches, patch area]` im2col of one or more planes.
    var columns = ScratchBuffer()
    /// `[vectors, C]` pooled features of every chunk (the classification head's inputs).
    var pooled = ScratchBuffer()
    /// `[vectors + 1, outputdim]` head outputs.
    var scores = ScratchBuffer()
    /// `[C]` head LayerNorm output and the pooled mean over chunks.
    var headNormed = ScratchBuffer()
    var headVector = ScratchBuffer()

    deinit {
        for b in [x, normed, qkv, context, hidden, planes, columns, pooled, scores, headNormed, headVector] { b.free() }
    }
}

/// Workspaces for concurrent callers of one model: each call takes one and gives it back.
final class WorkspacePool: @unchecked Sendable {
    private var free: [EncoderWorkspace] = []
    private let lock = NSLock()

    func with<R>(_ body: (EncoderWorkspace) throws -> R) rethrows -> R {
        lock.lock()
        let ws = free.popLast() ?? EncoderWorkspace()
        lock.unlock()
        defer {
            lock.lock()
            if free.count < 4 { free.append(ws) }
            lock.unlock()
        }
        return try body(ws)
    }
}
