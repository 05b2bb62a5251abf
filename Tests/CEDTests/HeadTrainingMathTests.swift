import XCTest
@testable import CED

/// The head's hand-written gradients, the losses, AdamW, the metrics and the split, against
/// finite differences and values worked out by hand.
final class HeadTrainingMathTests: XCTestCase {
    /// A small head with non-trivial parameters and random inputs.
    func randomProblem(d: Int, k: Int, b: Int, seed: UInt64) -> (ClassificationHead, [[Float]]) {
        var rng = TrainingRandom(seed: seed)
        var head = ClassificationHead(inputDim: d, outputDim: k, rng: &rng)
        head.normWeight = (0..<d).map { _ in 0.5 + rng.nextDouble() }
        head.normBias = (0..<d).map { _ in rng.nextGaussian() * 0.3 }
        head.weight = head.weight.map { _ in rng.nextGaussian() }
        head.bias = (0..<k).map { _ in rng.nextGaussian() * 0.5 }
        let inputs = (0..<b).map { _ in (0..<d).map { _ in Float(rng.nextGaussian() * 2 + 0.5) } }
        return (head, inputs)
    }

    func checkGradients(loss: CedLossFunction, targets: [Double], head: ClassificationHead, inputs: [[Float]]) {
        let (_, g) = head.lossAndGradients(inputs: inputs, targets: targets, loss: loss)
        let h = 1e-6
        func numeric(_ perturb: (inout ClassificationHead, Double) -> Void) -> Double {
            var plus = head, minus = head
            perturb(&plus, h)
            perturb(&minus, -h)
            return (plus.lossAndGradients(inputs: inputs, targets: targets, loss: loss).loss
                - minus.lossAndGradients(inputs: inputs, targets: targets, loss: loss).loss) / (2 * h)
        }
        func compare(_ analytic: Double, _ n: Double, _ what: String) {
            XCTAssertEqual(analytic, n, accuracy: 1e-8 + 1e-6 * abs(n), "\(loss) \(what)")
        }
        var checked = 0
        for i in 0..<head.inputDim {
            compare(g.normWeight[i], numeric { $0.normWeight[i] += $1 }, "dγ[\(i)]")
            compare(g.normBias[i], numeric { $0.normBias[i] += $1 }, "dβ[\(i)]")
            checked += 2
        }
        for i in 0..<head.weight.count {
            compare(g.weight[i], numeric { $0.weight[i] += $1 }, "dW[\(i)]")
            checked += 1
        }
        for i in 0..<head.outputDim {
            compare(g.bias[i], numeric { $0.bias[i] += $1 }, "db[\(i)]")
            checked += 1
        }
        XCTAssertEqual(checked, 2 * head.inputDim + head.weight.count + head.outputDim)
        // The gradient is not trivially zero.
        XCTAssertGreaterThan(g.weight.map(abs).max()!, 1e-3)
        XCTAssertGreaterThan(g.normWeight.map(abs).max()!, 1e-4)
    }

    func testGradientsMatchFiniteDifferencesSoftmax() {
        let (head, inputs) = randomProblem(d: 7, k: 3, b: 5, seed: 11)
        let classes = [0, 2, 1, 2, 0]
        var t = [Double](repeating: 0, count: 15)
        for (r, c) in classes.enumerated() { t[r * 3 + c] = 1 }
        checkGradients(loss: .softmaxCrossEntropy, targets: t, head: head, inputs: inputs)
    }

    func testGradientsMatchFiniteDifferencesBCE() {
        let (head, inputs) = randomProblem(d: 6, k: 4, b: 3, seed: 12)
        let t: [Double] = [1, 0, 1, 0,  0, 0, 0, 1,  1, 1, 0, 0]
        checkGradients(loss: .bceWithLogits, targets: t, head: head, inputs: inputs)
    }

    func testLossValuesAgainstClosedForms() {
        // BCE with logits: −[y·log σ(z) + (1−y)·log(1−σ(z))], averaged, by the naive formula.
        let z: [Double] = [0, 2, -3, 0.5]
        let y: [Double] = [1, 0, 1, 0]
        var naive = 0.0
        for (zi, yi) in zip(z, y) {
            let s = 1 / (1 + exp(-zi))
            naive -= yi * log(s) + (1 - yi) * log(1 - s)
        }
        let bce = CedLoss.bceWithLogits(logits: z, targets: y)
        XCTAssertEqual(bce.loss, naive / 4, accuracy: 1e-12)
        // Hand value: (log 2 + (2 + log(1+e⁻²)) + (3 + log(1+e⁻³)) + (0.5 + log(1+e^-0.5))) / 4
        XCTAssertEqual(bce.loss, (0.6931471805599453 + 2.1269280110429727 + 3.048587351573742 + 0.9740769841801067) / 4, accuracy: 1e-12)
        // Softmax CE: z = [1, 2, 3], class 2 → log(1 + e⁻¹ + e⁻²) = 0.40760596444438...
        let ce = CedLoss.softmaxCrossEntropy(logits: [1, 2, 3, 3, 2, 1], targets: [0, 0, 1, 0, 0, 1], classes: 3)
        XCTAssertEqual(ce.loss, (0.40760596444438 + 2.40760596444438) / 2, accuracy: 1e-12)
        // Gradient rows sum to zero (softmax minus one-hot).
        XCTAssertEqual(ce.gradient[0] + ce.gradient[1] + ce.gradient[2], 0, accuracy: 1e-15)
        // Extreme logits stay finite.
        let far = CedLoss.bceWithLogits(logits: [1000, -1000], targets: [0, 1])
        XCTAssertEqual(far.loss, 1000, accuracy: 1e-9)
        let farCE = CedLoss.softmaxCrossEntropy(logits: [1000, -1000], targets: [0, 1], classes: 2)
        XCTAssertEqual(farCE.loss, 2000, accuracy: 1e-9)
        XCTAssertEqual(CedLoss.binaryCrossEntropy(probabilities: [0, 0.5], targets: [1, 1]), (100 + log(2)) / 2, accuracy: 1e-12)
    }

    func testAdamWFirstStepByHand() {
        var head = ClassificationHead(normWeight: [1, 2], normBias: [0, 0.5], weight: [0.3, -0.2, 0.1, 0.4], bias: [0.1, -0.1])
        let before = head
        var g = head.lossAndGradients(inputs: [[1, 2]], targets: [1, 0], loss: .softmaxCrossEntropy).gradients
        g.weight = [0.5, -2, 0, 1e-3]
        var adam = AdamW(learningRate: 0.01, weightDecay: 0.1)
        adam.update(&head, gradients: g)
        // Step 1: m̂ = g, v̂ = g², so θ ← θ(1 − lr·λ) − lr·g/(|g| + ε); no decay off the weight.
        for i in 0..<4 {
            let gi = g.weight[i]
            let expect = before.weight[i] * (1 - 0.01 * 0.1) - 0.01 * gi / (abs(gi) + 1e-8)
            XCTAssertEqual(head.weight[i], expect, accuracy: 1e-15)
        }
        for i in 0..<2 {
            let gb = g.bias[i]
            XCTAssertEqual(head.bias[i], before.bias[i] - 0.01 * gb / (abs(gb) + 1e-8), accuracy: 1e-15)
            let gn = g.normWeight[i]
            XCTAssertEqual(head.normWeight[i], before.normWeight[i] - 0.01 * gn / (abs(gn) + 1e-8), accuracy: 1e-15)
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
        expect(.invalidOption, .init(), labels: [[0], [1, 0], [0], [1]], mentions: "2 labels")
        expect(.notEnoughExamples, .init(), labels: [[0], [1], [0], [0]], mentions: "'b' has 1 example")
    }
}
