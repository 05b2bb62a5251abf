import Foundation

/// One line of a training run's log: an optimiser step, or a validation. Its `Codable` form
/// is a line of `--log-format jsonl` (`{"epoch", "step", "loss", "lr"[, "grad_norm"]}` per
/// step; `{"epoch", "step", "validation": true, "train_loss", "val_accuracy"|"val_map",
/// "best"}` per validation); `text` is the line a terminal shows per validated epoch.
public struct CedTrainingLogLine: Codable, Sendable, Equatable {
    public var epoch: Int
    public var step: Int
    public var validation: Bool?
    public var loss: Double?
    public var trainLoss: Double?
    public var lr: Double?
    public var gradNorm: Double?
    public var validationLoss: Double?
    public var accuracy: Double?
    public var meanAveragePrecision: Double?
    public var best: Bool?

    enum CodingKeys: String, CodingKey {
        case epoch, step, validation, loss, trainLoss = "train_loss", lr, gradNorm = "grad_norm", validationLoss = "val_loss"
        case accuracy = "val_accuracy", meanAveragePrecision = "val_map", best
    }

    public init(epoch: Int, step: Int, validation: Bool? = nil, loss: Double? = nil, trainLoss: Double? = nil, lr: Double? = nil,
                gradNorm: Double? = nil, validationLoss: Double? = nil, accuracy: Double? = nil, meanAveragePrecision: Double? = nil,
                best: Bool? = nil) {
        (self.epoch, self.step, self.validation, self.loss, self.trainLoss, self.lr) = (epoch, step, validation, loss, trainLoss, lr)
        (self.gradNorm, self.validationLoss, self.accuracy, self.meanAveragePrecision, self.best)
            = (gradNorm, validationLoss, accuracy, meanAveragePrecision, best)
    }

    /// An optimiser step of fine-tuning or distillation.
    public init(_ s: TrainingStepLog) {
        self.init(epoch: s.epoch, step: s.step, loss: s.loss, lr: s.lr, gradNorm: s.gradNorm)
    }

    /// A validation of fine-tuning or distillation.
    public init(_ v: TrainingValidationLog) {
        self.init(epoch: v.epoch, step: v.step, validation: true, trainLoss: v.trainLoss, accuracy: v.accuracy,
                  meanAveragePrecision: v.meanAveragePrecision, best: v.isBest)
    }

    /// Whether the line reports a validation score.
    public var isValidated: Bool { accuracy != nil || meanAveragePrecision != nil }

    /// `epoch  3/10  train loss 0.2345[  val loss 0.1234][  val acc  95.0%][  val mAP  90.0%][  *]`
    /// (`metric` names the validation set; `*` marks the best validated epoch so far).
    public func text(epochs: Int, metric: String = "val") -> String {
        var line = String(format: "epoch %\(String(epochs).count)d/%d  train loss %.4f", epoch, epochs, trainLoss ?? loss ?? .nan)
        if let v = validationLoss { line += String(format: "  \(metric) loss %.4f", v) }
        if let a = accuracy { line += String(format: "  \(metric) acc %5.1f%%", 100 * a) }
        if let m = meanAveragePrecision { line += String(format: "  \(metric) mAP %5.1f%%", 100 * m) }
        return line + (best == true && (isValidated || validationLoss != nil) ? "  *" : "")
    }
}
