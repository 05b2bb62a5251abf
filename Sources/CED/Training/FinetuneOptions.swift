import Foundation

/// Hyperparameters of `FinetuneJob` (`ced finetune`).
public struct FinetuneOptions: Sendable, Codable, Equatable {
    /// Passes over the training segments; nil: 10 from trained weights, 30 from a random
    /// initialisation.
    public var epochs: Int?
    /// Segments per optimiser step (the last batch of an epoch may be smaller).
    public var batchSize: Int = 8
    /// Peak learning rate; nil: 1e-4 when starting from trained weights, 1e-3 from a
    /// random initialisation.
    public var learningRate: Double?
    /// AdamW's decoupled weight decay (tensors with ≥ 2 dimensions, not the positional
    /// embeddings or the cls token).
    public var weightDecay: Double = 0.05
    public var beta1: Double = 0.9
    public var beta2: Double = 0.999
    public var epsilon: Double = 1e-8
    /// Steps of linear warm-up.
    public var warmup: Int = 0
    public enum Schedule: String, Sendable, Codable, CaseIterable { case cosine, constant }
    /// After warm-up: cosine decay to 0.1·lr over the run (upstream), or constant.
    public var schedule: Schedule = .cosine
    /// Clip the global gradient norm to this (nil: no clipping).
    public var gradientClip: Double?
    /// Fraction of the files of each class held out for validation (0: none).
    public var validationSplit: Double = 0.1
    /// Stop after this many validations without a better accuracy (single-label) or mAP
    /// (multi-label); 0: never stop early.
    public var patience: Int = 0
    /// Seeds the split, the batch order, the augmentation, dropout, a new head and a
    /// random initialisation: the same seed and data give the same model bit for bit.
    public var seed: UInt64 = 0
    /// Several labels per file (CSV `label1;label2`).
    public var multiLabel: Bool = false
    /// The loss; nil: softmax cross-entropy for single-label data with a new head,
    /// otherwise upstream's loss for the pooling (BCE on the probabilities, or
    /// BCE-with-logits for `logit` pooling).
    public var loss: CedLoss?
    /// Waveform shift and log-mel masks (upstream's recipe), `.none` to turn them off.
    public var augmentation: CedAugmentation = CedAugmentation(shift: 0.5, shiftProbability: 0.5, timeMask: 0, freqMask: 0)
    /// Mixup's α (0: no mixup).
    public var mixup: Double = 0
    /// Start from upstream's random initialisation instead of the model's weights (its
    /// architecture is kept).
    public var randomInit: Bool = false
    /// Write a resumable checkpoint every this many optimiser steps (0: at the end of each
    /// epoch only).
    public var saveEvery: Int = 0
    /// How the BatchNorm over mel bins normalises while training, and so what the saved
    /// model's running statistics are.
    public enum BatchNormStatistics: String, Sendable, Codable, CaseIterable {
        /// `data` for a new head or a random initialisation, `momentum` when training goes
        /// on with the model's own head and classes.
        case auto
        /// Upstream's train mode: each step normalises with the batch's statistics and moves
        /// the running statistics towards them by momentum 0.01 (after S steps a fraction
        /// 0.99^S of the starting values remains).
        case momentum
        /// With the per-bin mean and variance of the whole training set, in training and in
        /// the saved model alike (a frozen BatchNorm whose scale and shift still train):
        /// small batches of dissimilar sounds give noisy batch statistics, and with few
        /// steps momentum statistics stay far from a new data set's, so eval-mode scores
        /// would disagree with what training optimised.
        case data
    }
    public var batchNormStatistics: BatchNormStatistics = .auto
    /// Activation memory a step may plan (bytes; nil: keep everything, the fastest): the
    /// backward pass then recomputes the least it must (`CedRecomputation`).
    public var activationMemoryLimit: Int?
    /// Arithmetic of the matrix products (bf16: bf16 products, fp32 weights and sums).
    public var precision: CedPrecision = .fp32

    public init() {}


    /// Throws `TrainingError(.invalidOption)` naming the first value out of range.
    public func validate() throws {
        func bad(_ name: String, _ why: String) -> TrainingError { TrainingError(.invalidOption, reason: "\(name) \(why)") }
        if let epochs, epochs < 1 { throw bad("epochs", "must be at least 1, found \(epochs)") }
        if batchSize < 1 { throw bad("batch size", "must be at least 1, found \(batchSize)") }
        if let lr = learningRate, !(lr > 0 && lr.isFinite) { throw bad("learning rate", "must be a positive number, found \(lr)") }
        if !(weightDecay >= 0 && weightDecay.isFinite) { throw bad("weight decay", "must be a number ≥ 0, found \(weightDecay)") }
        if !(beta1 >= 0 && beta1 < 1) || !(beta2 >= 0 && beta2 < 1) { throw bad("Adam betas", "must lie in [0, 1), found \(beta1), \(beta2)") }
        if !(epsilon > 0) { throw bad("Adam epsilon", "must be positive, found \(epsilon)") }
        if warmup < 0 { throw bad("warm-up", "must be ≥ 0 steps, found \(warmup)") }
        if let c = gradientClip, !(c > 0 && c.isFinite) { throw bad("gradient clip", "must be a positive norm, found \(c)") }
        if !(validationSplit >= 0 && validationSplit < 1) { throw bad("validation split", "must lie in [0, 1), found \(validationSplit)") }
        if patience < 0 { throw bad("patience", "must be ≥ 0, found \(patience)") }
        if !(mixup >= 0 && mixup.isFinite) { throw bad("mixup", "α must be ≥ 0, found \(mixup)") }
        let a = augmentation
        if !(a.shift >= 0 && a.shift <= 1) { throw bad("shift", "must lie in [0, 1] (a fraction of the clip), found \(a.shift)") }
        if !(a.shiftProbability >= 0 && a.shiftProbability <= 1) { throw bad("shift probability", "must lie in [0, 1], found \(a.shiftProbability)") }
        if a.timeMask < 0 || a.freqMask < 0 { throw bad("masks", "must be ≥ 0, found time \(a.timeMask), frequency \(a.freqMask)") }
        if saveEvery < 0 { throw bad("save-every", "must be ≥ 0 steps, found \(saveEvery)") }
    }
}
