import Foundation

/// The epochs of a training run, shared by fine-tuning (`FinetuneJob`) and distillation
/// (`DistillationJob`): shuffled batches of audio segments (a new order per epoch from the
/// seed), their log-mels with each segment's augmentation draw, mixup, one optimiser step
/// per batch (the backward pass hands each finished part to the AdamW step, which applies
/// it at once, or after clipping once every part has arrived), a validation
/// every `evaluateEvery` epochs keeping the best weights, early stopping, and a resumable
/// checkpoint after every epoch and every `saveEvery` steps. Every random choice is keyed
/// by seed, epoch and step, so a run resumed from a checkpoint continues bit for bit.
struct TrainingLoop {
    let model: CedTrainingModel
    let optimizer: CedAdamW
    let store: TrainingCheckpointStore
    let fingerprint: String
    let audio: TrainingAudio
    let segments: [TrainingAudio.Segment]
    let extractor: CedFeatureExtractor
    let epochs: Int
    let batchSize: Int
    let schedule: CedLearningRateSchedule
    let learningRate: Double
    let loss: CedLoss
    let mixup: Double
    let gradientClip: Double?
    let saveEvery: Int
    let patience: Int
    let seed: UInt64
    let classes: Int
    /// The targets `[classes]` of segment s in epoch e.
    let targets: (Int, Int) throws -> [Float]
    let augmentation: CedAugmentation?
    /// The augmentation draw of segment s in epoch e.
    let draw: (Int, Int) throws -> CedAugmentation.Draw
    /// Accuracy or mAP of the current weights (higher is better), nil: no validation.
    let evaluate: (() throws -> Double)?
    let metricIsMAP: Bool
    let evaluateEvery: Int
    /// Validations whose weights are kept (the best first): 1 keeps the best; more for
    /// averaging the best checkpoints at the end (upstream's `average`).
    var keepTop: Int = 1
    let events: (@Sendable (TrainingEvent) -> Void)?
    /// Where the time goes (this process's part of the run): preparing inputs (audio, log-mels,
    /// augmentation, targets, mixup) and the optimiser steps.
    var timing: TrainingTiming? = nil

    var stepsPerEpoch: Int { (segments.count + batchSize - 1) / batchSize }

    func run(_ progress: inout TrainingProgress) throws {
        let stepsPerEpoch = self.stepsPerEpoch, totalSteps = stepsPerEpoch * epochs
        var finished = progress.finished
        var lastCheckpoint: Int? = store.exists ? progress.globalStep : nil
        while !finished && progress.epoch < epochs {
            let epoch = progress.epoch
            var orderRNG = TrainingRandom(seed: TrainingNoise.key(seed ^ 0x4F52_4445_5200_0003, UInt64(epoch)))
            var order = Array(segments.indices)
            orderRNG.shuffle(&order)
            while progress.stepInEpoch < stepsPerEpoch {
                let b0 = progress.stepInEpoch * batchSize
                let batch = Array(order[b0 ..< min(order.count, b0 + batchSize)])
                let step = progress.globalStep
                let started = DispatchTime.now().uptimeNanoseconds
                let batchSegments = batch.map { segments[$0] }
                let draws = augmentation == nil ? [] : try batch.map { try draw($0, epoch) }
                let mels = try audio.batch(batchSegments, extractor: extractor, augmentation: augmentation, draws: draws)
                var x = mels.scalars
                var y = try batch.flatMap { try targets($0, epoch) }
                if mixup > 0 && batch.count > 1 {
                    var rng = TrainingRandom(seed: TrainingNoise.key(seed ^ 0x4D49_5855_5000, UInt64(step)))
                    let lambdas = CedMixup.lambdas(alpha: mixup, count: batch.count, rng: &rng)
                    CedMixup.apply(x: &x, stride: mels.count / batch.count, y: &y, classes: classes, lambdas: lambdas)
                }
                let prepared = DispatchTime.now().uptimeNanoseconds
                model.noiseStep = step
                let stepLR = schedule.learningRate(step: step, peak: learningRate)
                let result: CedTrainingStep
                let update = optimizer.step(learningRate: stepLR, clipNorm: gradientClip)
                do {
                    let input = Tensor(shape: mels.shape, scalars: x), target = Tensor(shape: [batch.count, classes], scalars: y)
                    // Forward, loss, then the backward pass hands each finished part to the
                    // update (with clipping, the update waits for the global norm).
                    result = try model.trainingStep(mels: input, targets: target, loss: loss, sink: update)
                } catch let e as TrainingError where e.kind == .nonFiniteLoss {
                    // The weights now in memory already produced a non-finite loss: the
                    // checkpoint on disk (written before) is the last good state.
                    let kept = lastCheckpoint.map { "The last good checkpoint (after step \($0)) is kept in \(store.directory.path): continue with --resume after lowering --lr or setting --grad-clip" }
                        ?? "No checkpoint had been written yet; lower --lr or set --grad-clip and start again"
                    throw TrainingError(.nonFiniteLoss,
                                        reason: "the loss became non-finite at step \(step + 1) (epoch \(epoch + 1)); training stopped. \(kept)")
                }
                let norm = update.gradientNorm
                if let timing {
                    let done = DispatchTime.now().uptimeNanoseconds
                    timing.inputSeconds += Double(prepared - started) / 1e9
                    timing.stepSeconds += Double(done - prepared) / 1e9
                    timing.items += batch.count
                }
                progress.globalStep += 1
                progress.stepInEpoch += 1
                progress.lossSum += result.loss * Double(batch.count)
                progress.lossCount += batch.count
                events?(.step(TrainingStepLog(epoch: epoch + 1, step: step + 1, totalSteps: totalSteps, loss: result.loss,
                                              lr: stepLR, gradNorm: norm)))
                if saveEvery > 0 && progress.globalStep % saveEvery == 0 && progress.stepInEpoch < stepsPerEpoch {
                    if save(progress) { lastCheckpoint = progress.globalStep }
                }
            }
            // End of the epoch: validate, keep the best, maybe stop early.
            var log = TrainingValidationLog(epoch: epoch + 1, step: progress.globalStep, accuracy: nil, meanAveragePrecision: nil,
                                            trainLoss: progress.lossSum / Double(max(1, progress.lossCount)), isBest: false)
            let validates = evaluate != nil && ((epoch + 1) % max(1, evaluateEvery) == 0 || epoch + 1 == epochs)
            if let evaluate, validates {
                let metric = try evaluate()
                if metricIsMAP { log.meanAveragePrecision = metric } else { log.accuracy = metric }
                progress.rank(epoch: epoch + 1, metric: metric, state: model.stateDict(), keep: keepTop)
                if metric > progress.bestMetric {
                    progress.bestMetric = metric
                    progress.bestEpoch = epoch + 1
                    progress.sinceBest = 0
                    log.isBest = true
                } else {
                    progress.sinceBest += 1
                }
            } else if evaluate == nil {
                progress.bestEpoch = epoch + 1
                log.isBest = true
            }
            progress.history.append(log)
            events?(.validation(log))
            progress.epoch += 1
            progress.stepInEpoch = 0
            progress.lossSum = 0
            progress.lossCount = 0
            if validates && patience > 0 && progress.sinceBest >= patience && progress.epoch < epochs {
                progress.stoppedEarly = true
                events?(.stoppedEarly(epoch: epoch + 1))
                finished = true
            }
            if progress.epoch >= epochs { finished = true }
            progress.finished = finished
            if save(progress) { lastCheckpoint = progress.globalStep }
        }
    }

    /// Writes a checkpoint; a failure (e.g. a full disk) is a warning, training goes on.
    func save(_ progress: TrainingProgress) -> Bool {
        do {
            try store.save(model: model, optimizer: optimizer, progress: progress, fingerprint: fingerprint)
            events?(.checkpoint(step: progress.globalStep))
            return true
        } catch {
            events?(.warning("could not write a checkpoint after step \(progress.globalStep) (\((error as? LocalizedError)?.errorDescription ?? "\(error)")); training goes on, the last checkpoint written (if any) is kept"))
            return false
        }
    }
}

/// Seconds a training run spent preparing inputs and in optimiser steps, and the items.
final class TrainingTiming: @unchecked Sendable {
    var inputSeconds = 0.0, stepSeconds = 0.0
    var items = 0
}
