import XCTest
@testable import CED

/// The head's hand-written gradients, the losses, AdamW, the metrics and the split, against
/// finite differences and values worked out by hand.
final class HeadTrainingMathTests: XCTestCase {
    /// A small head (the training model's head passes over a buffer of its own) with
    /// non-trivial parameters, and random inputs.
    func randomProblem(d: Int, k: Int, b: Int, seed: UInt64) throws -> (TrainableHead, [[Float]]) {
        var rng = TrainingRandom(seed: seed)
        var config = CedConfig()
        config.embedDim = d
        config.outputdim = k
        let head = try TrainableHead(config: config, rng: &rng)
        let p = head.parameters
        for i in 0..<d {
            head.parameterValues[p.norm.weight.at + i] = Float(0.5 + rng.nextDouble())
            head.parameterValues[p.norm.bias.at + i] = Float(rng.nextGaussian() * 0.3)
        }
        for i in 0..<(d * k) { head.parameterValues[p.linear.weight.at + i] = Float(rng.nextGaussian()) }
        for i in 0..<k { head.parameterValues[p.linear.bias!.at + i] = Float(rng.nextGaussian() * 0.5) }
        let inputs = (0..<b).map { _ in (0..<d).map { _ in Float(rng.nextGaussian() * 2 + 0.5) } }
        return (head, inputs)
    }

    /// The loss of the head in float64, written out here: LayerNorm (biased variance, eps
    /// 1e-5), Linear, then BCE-with-logits or softmax cross-entropy, means over the batch.
    func referenceLoss(_ v: [Double], _ head: TrainableHead, _ inputs: [[Float]], _ t: [[Float]], _ loss: CedLoss) -> Double {
        let p = head.parameters, d = head.passes.dim, k = head.passes.classes
        var total = 0.0
        for (x, y) in zip(inputs, t) {
            let mean = x.reduce(0.0) { $0 + Double($1) } / Double(d)
            let variance = x.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(d)
            // Typed closures: Swift 6.0's type checker gives up on the untyped ones.
            let std: Double = (variance + 1e-5).squareRoot()
            let h: [Double] = (0..<d).map { (i: Int) -> Double in
                let normed: Double = (Double(x[i]) - mean) / std
                return normed * v[p.norm.weight.at + i] + v[p.norm.bias.at + i]
            }
            let z: [Double] = (0..<k).map { (c: Int) -> Double in
                (0..<d).reduce(v[p.linear.bias!.at + c]) { (s: Double, i: Int) -> Double in s + v[p.linear.weight.at + c * d + i] * h[i] }
            }
            if loss == .bceWithLogits {
                for c in 0..<k {
                    let s = 1 / (1 + exp(-z[c]))
                    total -= (Double(y[c]) * log(s) + (1 - Double(y[c])) * log(1 - s)) / Double(k)
                }
            } else {
                let m = z.max()!
                let lse = m + log(z.reduce(0) { $0 + exp($1 - m) })
                for c in 0..<k { total -= Double(y[c]) * (z[c] - lse) }
            }
        }
        return total / Double(inputs.count)
    }

    /// The float32 backward pass against central differences of the float64 loss.
    func checkGradients(loss: CedLoss, targets: [[Float]], head: TrainableHead, inputs: [[Float]]) throws {
        let gradients = CedGradientBuffer(count: head.parameterCount)
        let value = try head.trainingStep(inputs, targets: targets, loss: loss, sink: gradients, epoch: 1)
        let v = (0..<head.parameterCount).map { Double(head.parameterValues[$0]) }
        XCTAssertEqual(value, referenceLoss(v, head, inputs, targets, loss), accuracy: 1e-5)
        let h = 1e-6
        var worst = 0.0, largest = 0.0
        for i in 0..<head.parameterCount {
            var plus = v, minus = v
            plus[i] += h
            minus[i] -= h
            let numeric = (referenceLoss(plus, head, inputs, targets, loss) - referenceLoss(minus, head, inputs, targets, loss)) / (2 * h)
            worst = max(worst, abs(Double(gradients.values[i]) - numeric))
            largest = max(largest, abs(numeric))
        }
        XCTAssertLessThan(worst, 1e-5 + 1e-4 * largest, "\(loss): float32 gradients against the float64 loss's differences")
        // The gradient is not trivially zero.
        XCTAssertGreaterThan(largest, 1e-2)
    }

    func testGradientsMatchFiniteDifferencesSoftmax() throws {
        let (head, inputs) = try randomProblem(d: 7, k: 3, b: 5, seed: 11)
        let classes = [0, 2, 1, 2, 0]
        let t: [[Float]] = classes.map { c in (0..<3).map { $0 == c ? 1 : 0 } }
        try checkGradients(loss: .softmaxCrossEntropy, targets: t, head: head, inputs: inputs)
    }

    func testGradientsMatchFiniteDifferencesBCE() throws {
        let (head, inputs) = try randomProblem(d: 6, k: 4, b: 3, seed: 12)
        let t: [[Float]] = [[1, 0, 1, 0], [0, 0, 0, 1], [1, 1, 0, 0]]
        try checkGradients(loss: .bceWithLogits, targets: t, head: head, inputs: inputs)
    }

    func value(_ loss: CedLoss, _ outputs: [Float], _ targets: [Float], classes: Int) -> (Double, [Float]) {
        var grad = [Float](repeating: 0, count: outputs.count)
        let v = loss.value(outputs, targets: targets, rows: outputs.count / classes, classes: classes, grad: &grad)
        return (v, grad)
    }

    func testLossValuesAgainstClosedForms() {
        // BCE with logits: −[y·log σ(z) + (1−y)·log(1−σ(z))], averaged, by the naive formula.
        let z: [Float] = [0, 2, -3, 0.5]
        let y: [Float] = [1, 0, 1, 0]
        var naive = 0.0
        for (zi, yi) in zip(z, y) {
            let s = 1 / (1 + exp(-Double(zi)))
            naive -= Double(yi) * log(s) + (1 - Double(yi)) * log(1 - s)
        }
        let bce = value(.bceWithLogits, z, y, classes: 4)
        XCTAssertEqual(bce.0, naive / 4, accuracy: 1e-12)
        // Hand value: (log 2 + (2 + log(1+e⁻²)) + (3 + log(1+e⁻³)) + (0.5 + log(1+e^-0.5))) / 4
        XCTAssertEqual(bce.0, (0.6931471805599453 + 2.1269280110429727 + 3.048587351573742 + 0.9740769841801067) / 4, accuracy: 1e-12)
        // Its gradient: (σ(z) − y) / n.
        for i in 0..<4 { XCTAssertEqual(Double(bce.1[i]), (1 / (1 + exp(-Double(z[i]))) - Double(y[i])) / 4, accuracy: 1e-7) }
        // Softmax CE: z = [1, 2, 3], class 2 → log(1 + e⁻¹ + e⁻²) = 0.40760596444438...
        let ce = value(.softmaxCrossEntropy, [1, 2, 3, 3, 2, 1], [0, 0, 1, 0, 0, 1], classes: 3)
        XCTAssertEqual(ce.0, (0.40760596444438 + 2.40760596444438) / 2, accuracy: 1e-12)
        // Gradient rows sum to zero (softmax minus one-hot).
        XCTAssertEqual(ce.1[0] + ce.1[1] + ce.1[2], 0, accuracy: 1e-7)
        // Extreme logits stay finite.
        XCTAssertEqual(value(.bceWithLogits, [1000, -1000], [0, 1], classes: 2).0, 1000, accuracy: 1e-9)
        XCTAssertEqual(value(.softmaxCrossEntropy, [1000, -1000], [0, 1], classes: 2).0, 2000, accuracy: 1e-9)
        XCTAssertEqual(value(.bce, [0, 0.5], [1, 1], classes: 2).0, (100 + log(2)) / 2, accuracy: 1e-12)
    }

    func testAdamWFirstStepByHand() throws {
        var config = CedConfig()
        config.embedDim = 2
        config.outputdim = 2
        var rng = TrainingRandom(seed: 1)
        let head = try TrainableHead(config: config, rng: &rng)
        let before = head.values()
        let g: [Float] = [0.5, -2, 0, 1e-3, 0.25, -0.5, 3, -1e-4, 0.75, -0.125]
        XCTAssertEqual(g.count, head.parameterCount)
        let gradients = CedGradientBuffer(count: head.parameterCount)
        gradients.values.update(from: g, count: g.count)
        let adam = CedAdamW(model: head, options: .init(learningRate: 0.01, weightDecay: 0.1))
        adam.update(gradients)
        // Step 1: m̂ = g, v̂ = g², so θ ← θ(1 − lr·λ) − lr·g/(|g| + ε); decay on the Linear
        // weight only (the LayerNorm and the biases are not decayed).
        for p in head.parameters.entries {
            for i in p.at ..< p.at + p.count {
                let decay = p == head.parameters.linear.weight ? 1 - 0.01 * 0.1 : 1
                let expect = Double(before[i]) * decay - 0.01 * Double(g[i]) / (abs(Double(g[i])) + 1e-8)
                XCTAssertEqual(Double(head.parameterValues[i]), expect, accuracy: 1e-6, "\(p.name)")
            }
        }
        XCTAssertEqual(adam.step, 1)
    }

    func testAveragePrecisionByHand() {
        // Ranks: +, −, +, − → AP = ½·1 + ½·⅔.
        XCTAssertEqual(TrainingMetrics.averagePrecision(scores: [0.9, 0.8, 0.7, 0.6], positives: [true, false, true, false])!,
                       0.5 + 0.5 * 2 / 3, accuracy: 1e-12)
        // Tied scores count together (scikit-learn): threshold 0.5 gives P ½, R ½; 0.2 gives P ⅔, R 1.
        XCTAssertEqual(TrainingMetrics.averagePrecision(scores: [0.5, 0.5, 0.2], positives: [true, false, true])!,
                       0.25 + 0.5 * 2 / 3, accuracy: 1e-12)
        XCTAssertNil(TrainingMetrics.averagePrecision(scores: [0.1, 0.2], positives: [false, false]))
        XCTAssertEqual(TrainingMetrics.meanAveragePrecision(scores: [[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]],
                                                            labels: [[0], [1], [0]], classes: 2)!,
                       ((1 + 1) / 2 + 1) / 2, accuracy: 1e-12)
    }

    func testRandomIsDeterministicAndUniform() {
        var a = TrainingRandom(seed: 42), b = TrainingRandom(seed: 42), c = TrainingRandom(seed: 43)
        let xa = (0..<100).map { _ in a.next() }
        XCTAssertEqual(xa, (0..<100).map { _ in b.next() })
        XCTAssertNotEqual(xa, (0..<100).map { _ in c.next() })
        var r = TrainingRandom(seed: 1)
        var counts = [Int](repeating: 0, count: 5)
        for _ in 0..<50_000 { counts[r.nextInt(below: 5)] += 1 }
        for n in counts { XCTAssertEqual(Double(n), 10_000, accuracy: 400) }
        var sum = 0.0, sq = 0.0
        for _ in 0..<50_000 { let g = r.nextGaussian(); sum += g; sq += g * g }
        XCTAssertEqual(sum / 50_000, 0, accuracy: 0.02)
        XCTAssertEqual(sq / 50_000, 1, accuracy: 0.03)
    }

    func testSplitIsStratifiedAndSeeded() {
        // 3 classes with 10, 5 and 2 examples, interleaved.
        var labels: [[Int]] = []
        for i in 0..<17 { labels.append([i < 10 ? 0 : (i < 15 ? 1 : 2)]) }
        var r1 = TrainingRandom(seed: 5), r2 = TrainingRandom(seed: 5), r3 = TrainingRandom(seed: 6)
        let s1 = HeadTrainer.split(labels: labels, classes: 3, fraction: 0.2, multiLabel: false, rng: &r1)
        let s2 = HeadTrainer.split(labels: labels, classes: 3, fraction: 0.2, multiLabel: false, rng: &r2)
        XCTAssertEqual(s1.train, s2.train)
        XCTAssertEqual(s1.validation, s2.validation)
        let s3 = HeadTrainer.split(labels: labels, classes: 3, fraction: 0.2, multiLabel: false, rng: &r3)
        XCTAssertNotEqual(s1.validation, s3.validation)
        // Per class: round(10·0.2) = 2, round(5·0.2) = 1, max(1, round(0.4)) = 1.
        let valCounts = (0..<3).map { c in s1.validation.filter { labels[$0][0] == c }.count }
        XCTAssertEqual(valCounts, [2, 1, 1])
        XCTAssertEqual(Set(s1.train).union(s1.validation), Set(0..<17))
        XCTAssertTrue(Set(s1.train).isDisjoint(with: s1.validation))

        // Multi-label: every class keeps a training example.
        let ml: [[Int]] = [[0, 1], [0], [0], [0, 2], [1], [0, 1], [2, 0], [0]]
        for seed in 0..<20 as Range<UInt64> {
            var r = TrainingRandom(seed: seed)
            let s = HeadTrainer.split(labels: ml, classes: 3, fraction: 0.5, multiLabel: true, rng: &r)
            for c in 0..<3 { XCTAssertTrue(s.train.contains { ml[$0].contains(c) }, "class \(c), seed \(seed)") }
            XCTAssertFalse(s.validation.isEmpty)
        }
    }

    func testTrainerRejectsBadOptionsAndLabels() {
        let v: [[Float]] = [[1, 2, 3], [3, 2, 1], [1, 1, 2], [2, 1, 1]]
        func expect(_ kind: TrainingError.Kind, _ options: HeadTrainingOptions, labels: [[Int]] = [[0], [1], [0], [1]],
                    mentions: String, line: UInt = #line) {
            XCTAssertThrowsError(try HeadTrainer(options: options).train(vectors: v, labels: labels, classes: ["a", "b"]), line: line) { e in
                guard let e = e as? TrainingError else { return XCTFail("\(e)", line: line) }
                XCTAssertEqual(e.kind, kind, line: line)
                XCTAssertTrue(e.description.contains(mentions), e.description, line: line)
            }
        }
        expect(.invalidOption, .init(epochs: 0), mentions: "epochs")
        expect(.invalidOption, .init(learningRate: -1), mentions: "learning rate")
        expect(.invalidOption, .init(validationSplit: 1), mentions: "validation split")
        expect(.invalidOption, .init(batchSize: 0), mentions: "batch size")
        expect(.tooManyLabels, .init(), labels: [[0], [1, 0], [0], [1]], mentions: "2 labels")
        expect(.notEnoughExamples, .init(), labels: [[0], [1], [0], [0]], mentions: "'b' has 1 example")
    }
}
