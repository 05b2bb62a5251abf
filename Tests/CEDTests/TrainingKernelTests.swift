import CEDKernels
import XCTest
@testable import CED

/// Each fast kernel of the training engine beside a naive float64 reference.
final class TrainingKernelTests: XCTestCase {
    func values(_ n: Int, seed: UInt64, scale: Double = 1) -> [Float] {
        var rng = TrainingRandom(seed: seed)
        return (0..<n).map { _ in Float(scale * rng.nextGaussian()) }
    }

    func testLinearProductsMatchNaiveReference() throws {
        // Odd sizes: edge tiles, k blocks, both dW operand orders (in < out and in > out).
        for (rows, out, inF) in [(37, 29, 70), (150, 96, 40), (5, 3, 600), (64, 700, 33)] {
            let x = values(rows * inF, seed: 1), w = values(out * inF, seed: 2), b = values(out, seed: 3)
            let dy = values(rows * out, seed: 4)
            var y = [Float](repeating: 0, count: rows * out), dx = [Float](repeating: 0, count: rows * inF)
            var dw = values(out * inF, seed: 5)
            let dw0 = dw
            x.withUnsafeBufferPointer { xp in w.withUnsafeBufferPointer { wp in b.withUnsafeBufferPointer { bp in
                dy.withUnsafeBufferPointer { dyp in
                    TrainingGEMM.forward(x: xp.baseAddress!, ldx: inF, rows: rows, weight: wp.baseAddress!, out: out, in: inF,
                                         bias: bp.baseAddress!, y: &y, ldy: out)
                    TrainingGEMM.backwardInput(dy: dyp.baseAddress!, lddy: out, rows: rows, weight: wp.baseAddress!, out: out,
                                               in: inF, dx: &dx, lddx: inF, accumulate: false)
                    TrainingGEMM.backwardWeight(dy: dyp.baseAddress!, lddy: out, x: xp.baseAddress!, ldx: inF, rows: rows,
                                                out: out, in: inF, dw: &dw, accumulate: true)
                }
            } } }
            var ey = 0.0, edx = 0.0, edw = 0.0
            for r in 0..<rows { for o in 0..<out {
                var s = Double(b[o]); for i in 0..<inF { s += Double(x[r * inF + i]) * Double(w[o * inF + i]) }
                ey = max(ey, abs(s - Double(y[r * out + o])))
            } }
            for r in 0..<rows { for i in 0..<inF {
                var s = 0.0; for o in 0..<out { s += Double(dy[r * out + o]) * Double(w[o * inF + i]) }
                edx = max(edx, abs(s - Double(dx[r * inF + i])))
            } }
            for o in 0..<out { for i in 0..<inF {
                var s = Double(dw0[o * inF + i]); for r in 0..<rows { s += Double(dy[r * out + o]) * Double(x[r * inF + i]) }
                edw = max(edw, abs(s - Double(dw[o * inF + i])))
            } }
            let tol = 1e-4 * Double(max(rows, inF, out)).squareRoot()
            XCTAssertLessThan(ey, tol, "x·Wᵀ \(rows)×\(out)×\(inF)")
            XCTAssertLessThan(edx, tol, "dY·W \(rows)×\(out)×\(inF)")
            XCTAssertLessThan(edw, tol, "dW += dYᵀ·X \(rows)×\(out)×\(inF)")
        }
    }

    func testLayerNormForwardBackward() throws {
        let rows = 70, cols = 45, ld = 48
        var x = values(rows * ld, seed: 7, scale: 3)
        for r in 0..<rows { x[r * ld] += Float(r) }   // different means
        let w = values(cols, seed: 8).map { 1 + 0.3 * $0 }, b = values(cols, seed: 9)
        let dy = values(rows * ld, seed: 10)
        var y = [Float](repeating: 0, count: rows * ld), mean = [Float](repeating: 0, count: rows), rstd = mean
        var dx = values(rows * ld, seed: 11)
        let dx0 = dx
        var dw = [Float](repeating: 0.5, count: cols), db = [Float](repeating: -0.25, count: cols)
        TrainingKernels.layerNormForward(x, ldx: ld, rows: rows, cols: cols, weight: w, bias: b, eps: 1e-6, y: &y, ldy: ld,
                                         mean: &mean, rstd: &rstd)
        TrainingKernels.layerNormBackward(dy: dy, lddy: ld, x: x, ldx: ld, mean: mean, rstd: rstd, weight: w, rows: rows, cols: cols,
                                          dx: &dx, lddx: ld, accumulate: true, dweight: &dw, dbias: &db)
        var eY = 0.0, eDX = 0.0
        var rdw = [Double](repeating: 0.5, count: cols), rdb = [Double](repeating: -0.25, count: cols)
        for r in 0..<rows {
            let xr = (0..<cols).map { Double(x[r * ld + $0]) }
            let m = xr.reduce(0, +) / Double(cols)
            let v = xr.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(cols)
            let inv = 1 / (v + 1e-6).squareRoot()
            let xh = xr.map { ($0 - m) * inv }
            let g = (0..<cols).map { Double(dy[r * ld + $0]) * Double(w[$0]) }
            let mg = g.reduce(0, +) / Double(cols)
            let mgx = zip(g, xh).map { $0 * $1 }.reduce(0, +) / Double(cols)
            for j in 0..<cols {
                eY = max(eY, abs(xh[j] * Double(w[j]) + Double(b[j]) - Double(y[r * ld + j])))
                let want = Double(dx0[r * ld + j]) + inv * (g[j] - mg - xh[j] * mgx)
                eDX = max(eDX, abs(want - Double(dx[r * ld + j])))
                rdw[j] += Double(dy[r * ld + j]) * xh[j]
                rdb[j] += Double(dy[r * ld + j])
            }
        }
        XCTAssertLessThan(eY, 1e-5)
        XCTAssertLessThan(eDX, 1e-4)
        for j in 0..<cols {
            XCTAssertEqual(Double(dw[j]), rdw[j], accuracy: 1e-3)
            XCTAssertEqual(Double(db[j]), rdb[j], accuracy: 1e-3)
        }
    }

    func testGeluBackwardMatchesTheDerivative() throws {
        let h: [Float] = stride(from: -14.0, through: 14.0, by: 0.0137).map { Float($0) } + [0, -0.0, 1e-30, .nan]
        let dy = values(h.count, seed: 12)
        for variant in GEMMKernel.available.map(\.geluVariant) + [0] {
            var dx = [Float](repeating: 0, count: h.count), y = dx, gp = dx
            ced_gelu_backward(h, dy, &dx, Int64(h.count), variant)
            ced_gelu_and_grad(h, &y, &gp, Int64(h.count), variant)
            for i in 0..<h.count {
                let x = Double(h[i])
                if x.isNaN { XCTAssertTrue(dx[i].isNaN && y[i].isNaN); continue }
                let phi = 0.5 * (1 + erf(x / 2.0.squareRoot())), pdf = exp(-x * x / 2) / (2 * Double.pi).squareRoot()
                let want = Double(dy[i]) * (phi + x * pdf)
                XCTAssertEqual(Double(dx[i]), want, accuracy: 2e-6 * max(1, abs(Double(dy[i]))), "GELU' at \(x), variant \(variant)")
                XCTAssertEqual(Double(gp[i]), phi + x * pdf, accuracy: 2e-6, "fused GELU' at \(x), variant \(variant)")
                XCTAssertEqual(Double(y[i]), x * phi, accuracy: 2e-6 * max(1, abs(x)), "fused GELU at \(x), variant \(variant)")
            }
        }
    }

    func testTransposeAndColumnSums() throws {
        for (rows, cols) in [(1, 1), (7, 9), (33, 65), (100, 17)] {
            let src = values(rows * (cols + 3), seed: 13)
            for variant: Int32 in [0, TrainingKernels.transposeVariant] {
                var dst = values(cols * (rows + 2), seed: 14)
                let before = dst
                ced_transpose(src, Int64(cols + 3), Int64(rows), Int64(cols), &dst, Int64(rows + 2), 1, variant)
                for i in 0..<rows { for j in 0..<cols {
                    XCTAssertEqual(dst[j * (rows + 2) + i], before[j * (rows + 2) + i] + src[i * (cols + 3) + j])
                } }
                // Untouched padding.
                for j in 0..<cols { XCTAssertEqual(dst[j * (rows + 2) + rows], before[j * (rows + 2) + rows]) }
            }
            var sums = [Float](repeating: 1, count: cols)
            TrainingKernels.columnSums(src, lddy: cols + 3, rows: rows, cols: cols, into: &sums, accumulate: true)
            for j in 0..<cols {
                let want = 1 + (0..<rows).map { Double(src[$0 * (cols + 3) + j]) }.reduce(0, +)
                XCTAssertEqual(Double(sums[j]), want, accuracy: 1e-4)
            }
        }
    }

    /// Attention forward and backward (with dropout) against a float64 implementation.
    func testAttentionForwardBackwardWithDropout() throws {
        var config = CedConfig(name: nil)
        config.embedDim = 24; config.numHeads = 3; config.depth = 1; config.targetLength = 160
        let pl = TrainingPlan(config: config, batch: 2, frames: 96)   // N = 4·6 = 24 tokens, head_dim 8
        let n = pl.tokens, d = pl.headDim, e = pl.embed, p: Float = 0.25, key: UInt64 = 99
        let qkv = values(pl.rows * pl.ld3, seed: 15, scale: 1.5), dctx = values(pl.rows * pl.ldE, seed: 16)
        var probs = [Float](repeating: 0, count: pl.batch * pl.heads * n * n)
        var ctx = [Float](repeating: 0, count: pl.rows * pl.ldE), dqkv = [Float](repeating: 0, count: pl.rows * pl.ld3)
        TrainingAttention.forward(pl, qkv: qkv, probs: &probs, context: &ctx, dropout: p, key: key)
        TrainingAttention.backward(pl, qkv: qkv, probs: &probs, dContext: dctx, dqkv: &dqkv, dropout: p, key: key)
        let scale = 1 / Double(d).squareRoot()
        var eP = 0.0, eC = 0.0, eG = 0.0
        for b in 0..<pl.batch { for h in 0..<pl.heads {
            let item = b * pl.heads + h
            func q(_ i: Int, _ c: Int) -> Double { Double(qkv[(b * n + i) * pl.ld3 + h * d + c]) }
            func k(_ i: Int, _ c: Int) -> Double { Double(qkv[(b * n + i) * pl.ld3 + e + h * d + c]) }
            func v(_ i: Int, _ c: Int) -> Double { Double(qkv[(b * n + i) * pl.ld3 + 2 * e + h * d + c]) }
            func mask(_ i: Int, _ j: Int) -> Double { Double(TrainingNoise.dropoutScale(key, item * n * n + i * n + j, p: p, scale: 1 / (1 - p))) }
            var P = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
            for i in 0..<n {
                let s = (0..<n).map { j in (0..<d).map { q(i, $0) * k(j, $0) }.reduce(0, +) * scale }
                let m = s.max()!, ex = s.map { exp($0 - m) }, z = ex.reduce(0, +)
                P[i] = ex.map { $0 / z }
                for j in 0..<n { eP = max(eP, abs(P[i][j] - Double(probs[item * n * n + i * n + j]))) }
            }
            func dc(_ i: Int, _ c: Int) -> Double { Double(dctx[(b * n + i) * pl.ldE + h * d + c]) }
            var dS = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
            for i in 0..<n {
                for c in 0..<d {
                    let want = (0..<n).map { P[i][$0] * mask(i, $0) * v($0, c) }.reduce(0, +)
                    eC = max(eC, abs(want - Double(ctx[(b * n + i) * pl.ldE + h * d + c])))
                }
                let dP = (0..<n).map { j in (0..<d).map { dc(i, $0) * v(j, $0) }.reduce(0, +) * mask(i, j) }
                let dot = (0..<n).map { P[i][$0] * dP[$0] }.reduce(0, +)
                dS[i] = (0..<n).map { P[i][$0] * (dP[$0] - dot) }
            }
            for i in 0..<n { for c in 0..<d {
                let dq = (0..<n).map { dS[i][$0] * k($0, c) }.reduce(0, +) * scale
                let dk = (0..<n).map { dS[$0][i] * q($0, c) }.reduce(0, +) * scale
                let dv = (0..<n).map { P[$0][i] * mask($0, i) * dc($0, c) }.reduce(0, +)
                let row = (b * n + i) * pl.ld3
                eG = max(eG, abs(dq - Double(dqkv[row + h * d + c])), abs(dk - Double(dqkv[row + e + h * d + c])),
                         abs(dv - Double(dqkv[row + 2 * e + h * d + c])))
            } }
        } }
        XCTAssertLessThan(eP, 1e-6)
        XCTAssertLessThan(eC, 1e-5)
        XCTAssertLessThan(eG, 1e-5)
    }

    func testAdamWAndSchedules() throws {
        var config = CedConfig(name: nil)
        config.embedDim = 16; config.numHeads = 2; config.depth = 1; config.outputdim = 3; config.targetLength = 64
        let model = try CedTrainingModel(config: config, seed: 3)
        let before = model.stateDict()
        var rng = TrainingRandom(seed: 4)
        let gradients = CedGradientBuffer(count: model.parameterCount)
        for i in 0..<model.parameterCount { gradients.values[i] = Float(rng.nextGaussian()) }
        let grads = Dictionary(uniqueKeysWithValues: model.table.parameters.map { ($0.name, gradients.tensor($0)) })
        let o = CedAdamW.Options(learningRate: 0.01, beta1: 0.8, beta2: 0.9, epsilon: 1e-6, weightDecay: 0.1)
        let adam = CedAdamW(model: model, options: o)
        adam.update(gradients)
        adam.update(gradients, learningRate: 0.005)
        for p in model.table.parameters {
            let w0 = before[p.name]!.scalars, g = grads[p.name]!.scalars, w = model.parameter(p.name)!.scalars
            for i in 0..<min(5, w0.count) {
                var theta = Double(w0[i]), m = 0.0, v = 0.0
                for (t, lr) in [(1, 0.01), (2, 0.005)] {
                    if p.decays { theta *= 1 - lr * 0.1 }
                    m = 0.8 * m + 0.2 * Double(g[i]); v = 0.9 * v + 0.1 * Double(g[i]) * Double(g[i])
                    let mh = m / (1 - pow(0.8, Double(t))), vh = v / (1 - pow(0.9, Double(t)))
                    theta -= lr * mh / (vh.squareRoot() + 1e-6)
                }
                XCTAssertEqual(Double(w[i]), theta, accuracy: 1e-6, "\(p.name)[\(i)]")
            }
        }
        XCTAssertFalse(model.table["encoder.time_pos_embed"]!.decays)
        XCTAssertFalse(model.table["outputlayer.1.bias"]!.decays)
        XCTAssertTrue(model.table["encoder.patch_embed.proj.weight"]!.decays)
        // Clipping: the global norm, then scaled to the maximum.
        let expectNorm = (0..<model.parameterCount).map { Double(gradients.values[$0]) }.map { $0 * $0 }.reduce(0, +).squareRoot()
        let norm = gradients.clip(maxNorm: 1)
        XCTAssertEqual(norm, expectNorm, accuracy: 1e-9 * expectNorm)
        XCTAssertGreaterThan(norm, 1)
        let after = (0..<model.parameterCount).map { Double(gradients.values[$0]) }.map { $0 * $0 }.reduce(0, +).squareRoot()
        XCTAssertEqual(after, 1, accuracy: 1e-5)
        // Schedules.
        let cosine = CedLearningRateSchedule.cosine(warmup: 10, totalSteps: 110, finalFraction: 0.1)
        XCTAssertEqual(cosine.learningRate(step: 0, peak: 1), 0.1, accuracy: 1e-12)
        XCTAssertEqual(cosine.learningRate(step: 9, peak: 1), 1, accuracy: 1e-12)
        XCTAssertEqual(cosine.learningRate(step: 10, peak: 1), 1, accuracy: 1e-12)
        XCTAssertEqual(cosine.learningRate(step: 109, peak: 1), 0.1, accuracy: 1e-12)
        XCTAssertEqual(cosine.learningRate(step: 10 + 99 / 2, peak: 2) , 2 * (0.1 + 0.9 * (1 + cos(Double.pi * 49 / 99)) / 2), accuracy: 1e-12)
        XCTAssertEqual(CedLearningRateSchedule.constant(warmup: 0).learningRate(step: 5, peak: 3e-4), 3e-4)
    }

    func testAugmentationDrawsAndMixup() throws {
        let aug = CedAugmentation(shift: 0.5, shiftProbability: 0.5, timeMask: 40, freqMask: 8)
        XCTAssertEqual(aug.draw(seed: 5), aug.draw(seed: 5), "a draw is a function of its seed")
        var shifted = 0, widthSum = 0
        for seed in 0..<400 as Range<UInt64> {
            let d = aug.draw(seed: seed)
            if d.shifted { shifted += 1; XCTAssertLessThanOrEqual(abs(d.shiftFraction), 0.5) }
            var mel = Tensor(shape: [64, 100], scalars: [Float](repeating: -50, count: 6400))
            aug.mask(&mel, draw: d)
            let maskedFrames = (0..<100).filter { t in (0..<64).allSatisfy { mel.scalars[$0 * 100 + t] == 0 } }
            XCTAssertLessThan(maskedFrames.count, 40)
            if let first = maskedFrames.first { XCTAssertEqual(maskedFrames, Array(first ..< first + maskedFrames.count)) }
            widthSum += Int(d.timeValue * 40)
        }
        XCTAssertEqual(Double(shifted) / 400, 0.5, accuracy: 0.08)
        XCTAssertEqual(Double(widthSum) / 400, 19.5, accuracy: 2.5)
        // The roll: positive fractions move samples later, wrapping around.
        let r = CedAugmentation.shifted([1, 2, 3, 4], draw: .init(shiftFraction: 0.25, shifted: true, timeValue: 0, timeStart: 0, freqValue: 0, freqStart: 0))
        XCTAssertEqual(r, [4, 1, 2, 3])
        // Mixup pairs each example with its mirror in the batch.
        var x: [Float] = [1, 1, 2, 2, 3, 3], y: [Float] = [1, 0, 0, 1, 1, 1]
        CedMixup.apply(x: &x, stride: 2, y: &y, classes: 2, lambdas: [0.25, 0.5, 1])
        XCTAssertEqual(x, [1.5, 1.5, 2, 2, 1, 1])
        XCTAssertEqual(y, [1, 0.25, 0, 1, 1, 0])
        var rng = TrainingRandom(seed: 8)
        let l = CedMixup.lambdas(alpha: 0.5, count: 4000, rng: &rng)
        XCTAssertTrue(l.allSatisfy { $0 >= 0 && $0 <= 1 })
        XCTAssertEqual(l.reduce(0, +) / 4000, 0.5, accuracy: 0.02, "Beta(α, α) has mean 1/2")
        let v = l.map { ($0 - 0.5) * ($0 - 0.5) }.reduce(0, +) / 4000
        XCTAssertEqual(v, 0.125, accuracy: 0.01, "Beta(0.5, 0.5) has variance 1/8")
    }
}

/// `--precision bf16` training: bf16 products, fp32 everything else, close to fp32.
final class TrainingBF16Tests: XCTestCase {
    func testBF16StepIsCloseToFP32() throws {
        let cases = try TrainingGoldenTests.sharedCases()
        let c = try XCTUnwrap(cases.first { $0.name == "micro-logit-bcewithlogits" } ?? cases.first)
        let mel = try XCTUnwrap(try c.golden("input_mel")), targets = try XCTUnwrap(try c.golden("targets"))
        let fp32 = try CedTrainingModel(config: c.config, weights: c.weights)
        let bf16 = try CedTrainingModel(config: c.config, weights: c.weights)
        bf16.precision = .bf16
        let a = try fp32.gradients(mels: mel, targets: targets, loss: c.loss)
        let b = try bf16.gradients(mels: mel, targets: targets, loss: c.loss)
        if BF16Kernel.best == nil {
            XCTAssertEqual(a.gradients, b.gradients, "without a bf16 kernel, bf16 trains in fp32")
            return
        }
        XCTAssertEqual(a.loss, b.loss, accuracy: 5e-3 * a.loss)
        XCTAssertLessThan(maxAbsDiff(a.outputs.scalars, b.outputs.scalars), 0.05)
        // The gradient as a whole points the same way (cosine similarity over every parameter).
        var dot = 0.0, na = 0.0, nb = 0.0
        for (name, ga) in a.gradients {
            for (x, y) in zip(ga.scalars, b.gradients[name]!.scalars) { dot += Double(x) * Double(y); na += Double(x * x); nb += Double(y * y) }
        }
        let cosine = dot / (na * nb).squareRoot()
        XCTAssertGreaterThan(cosine, 0.99, "bf16 gradient direction")
        XCTAssertNotEqual(a.gradients, b.gradients, "bf16 products were used")
        print("bf16 training step: loss \(b.loss) vs \(a.loss), gradient cosine \(cosine)")
    }
}

/// Dropout, attention dropout and drop path regenerate the same masks in the backward pass
/// and in recomputed forward passes: every recomputation level gives the same bits.
final class TrainingDropoutTests: XCTestCase {
    func testRecomputationWithDropoutGivesTheSameBits() throws {
        var config = CedConfig(name: nil)
        config.embedDim = 32; config.numHeads = 2; config.depth = 3; config.outputdim = 5; config.targetLength = 200
        config.dropRate = 0.2; config.attnDropRate = 0.15; config.dropPathRate = 0.3; config.pooling = .logit
        var rng = TrainingRandom(seed: 9)
        let mels = Tensor(shape: [3, 64, 150], scalars: (0..<(3 * 64 * 150)).map { _ in Float(-40 + 10 * rng.nextGaussian()) })
        let targets = Tensor(shape: [3, 5], scalars: (0..<15).map { _ in Float(rng.nextDouble()) })
        var states: [[String: Tensor]] = []
        var losses: [[Double]] = []
        for level in CedRecomputation.allCases {
            let m = try CedTrainingModel(config: config, seed: 4)
            m.recomputation = level
            m.noiseSeed = 77
            let adam = CedAdamW(model: m, options: .init(learningRate: 1e-3))
            var l: [Double] = []
            for step in 0..<3 {
                m.noiseStep = step
                l.append(try m.trainingStep(mels: mels, targets: targets, sink: adam.step()).loss)
            }
            states.append(m.stateDict().tensors)
            losses.append(l)
        }
        for i in 1..<states.count {
            XCTAssertEqual(losses[i], losses[0], "losses with recomputation \(CedRecomputation.allCases[i])")
            XCTAssertEqual(states[i], states[0], "weights with recomputation \(CedRecomputation.allCases[i])")
        }
        // Dropout is on: another noise seed gives other losses.
        let m = try CedTrainingModel(config: config, seed: 4)
        m.noiseSeed = 78
        XCTAssertNotEqual(try m.gradients(mels: mels, targets: targets).loss, losses[0][0])
    }
}
