import ArgumentParser
import CED
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `ced bench-train`: the training side of `ced bench`. One optimiser step = train-mode
/// forward + BCE-with-logits + backward + AdamW on a batch of 10 s log-mels (1001 frames),
/// `logit` pooling, as the reference README's PyTorch figures; `scripts/bench.sh --train`
/// runs it beside the PyTorch peer (`scripts/ced_torch.py bench`).
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-train",
        abstract: "Time CED training steps in-process: forward + loss + backward + AdamW, per size.",
        discussion: """
            Each size (the published architectures, 527 classes, `logit` pooling, upstream's \
            random initialisation: speed does not depend on the values) trains on a fixed \
            batch of random 10 s log-mels. Figures are the best and the median of --runs \
            steps after --warmup untimed ones; the peak RSS is the process's (run one size \
            per process to read it per size, as scripts/bench.sh does). The activation \
            memory the step planned is printed too.

            Examples:
              ced bench-train --models tiny
              ced bench-train --models base --batch 4 --format json
            """)

    enum Format: String, ExpressibleByArgument, CaseIterable { case table, json }

    @Option(help: ArgumentHelp("Model sizes, comma-separated.", valueName: "tiny,mini,small,base"))
    var models: String = "tiny"

    @Option(help: ArgumentHelp("Clips per step (default: 8, and 4 for base as the reference's PyTorch figures).", valueName: "n"))
    var batch: Int?

    @Option(help: ArgumentHelp("Frames per clip (1001 = 10 s).", valueName: "n"))
    var frames: Int = 1001

    @Option(help: ArgumentHelp("Arithmetic of the matrix products: fp32, or bf16 (bf16 products, fp32 weights and sums).", valueName: "fp32|bf16"))
    var precision: String = "fp32"

    @Option(help: ArgumentHelp("What the backward pass recomputes instead of keeping: none, attention, mlp or blocks.", valueName: "level"))
    var recompute: CedRecomputation = .none

    @Option(help: ArgumentHelp("Timed steps.", valueName: "n"))
    var runs: Int = 5

    @Option(help: ArgumentHelp("Untimed steps first.", valueName: "n"))
    var warmup: Int = 1

    @Option(help: ArgumentHelp("Output: table (default) or json.", valueName: "format"))
    var format: Format = .table

    var modelList: [String] { models.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() } }

    func validate() throws {
        for m in modelList where !Bench.sizes.contains(m) {
            throw ValidationError("unknown model size '\(m)' in --models (expected \(Bench.sizes.joined(separator: ", ")))")
        }
        if let batch, batch < 1 { throw ValidationError("--batch must be at least 1") }
        if frames < 16 { throw ValidationError("--frames must be at least 16") }
        if CedPrecision(rawValue: precision) == nil { throw ValidationError("--precision must be fp32 or bf16") }
        if runs < 1 || warmup < 0 { throw ValidationError("--runs must be at least 1 and --warmup at least 0") }
    }

    func run() throws {
        var rows: [CedTrainingBenchRow] = []
        for size in modelList {
            var config = CedConfig(name: "ced-\(size)")
            config.depth = 12
            config.outputdim = 527
            config.pooling = .logit
            let model = try CedTrainingModel(config: config, seed: 1)
            model.precision = CedPrecision(rawValue: precision) ?? .fp32
            model.recomputation = recompute
            let b = batch ?? (size == "base" ? 4 : 8)
            var rng = TrainingRandom(seed: 2)
            let mels = Tensor(shape: [b, config.nMels, frames],
                              scalars: (0..<(b * config.nMels * frames)).map { _ in Float(-45 + 15 * rng.nextGaussian()) })
            let targets = Tensor(shape: [b, 527], scalars: (0..<(b * 527)).map { _ in rng.nextDouble() < 0.02 ? 1 : 0 })
            let adam = CedAdamW(model: model, options: .init(learningRate: 1e-4, weightDecay: 0.05))
            var times: [Double] = [], cpu: [Double] = []
            for i in 0..<(warmup + runs) {
                let t0 = DispatchTime.now().uptimeNanoseconds, c0 = CedMachine.cpuSeconds()
                try model.trainingStep(mels: mels, targets: targets, loss: .bceWithLogits, sink: adam.step())
                let dt = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6
                if i >= warmup { times.append(dt); cpu.append(1000 * (CedMachine.cpuSeconds() - c0)) }
            }
            rows.append(CedTrainingBenchRow(model: size, batch: b, frames: frames, parameters: model.parameterCount, stepMs: times, cpuMs: cpu,
                                            activationBytes: model.activationBytes(batch: b, frames: frames)))
        }
        if format == .json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(rows), as: UTF8.self))
            return
        }
        print("ced bench-train: \(precision) (\(CedPrecision(rawValue: precision)!.kernelPath)), \(rows.first?.threads ?? 0) threads, \(frames) frames per clip, logit pooling, BCE-with-logits + AdamW, recomputation \(recompute)")
        print(([CedTrainingBenchRow.tableHeader] + rows.map(\.tableRow)).joined(separator: "\n"))
    }
}

extension CedRecomputation: ExpressibleByArgument {
    public init?(argument: String) { self.init(name: argument) }
}
