import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Resumable checkpoints of a fine-tuning run, in a folder of their own:
///
/// ```
/// .<output>.ced-finetune/
///   current              the name of the newest complete checkpoint
///   step-<n>/state.json  format, run fingerprint, optimiser step, where the run is
///   step-<n>/state.safetensors
///                        param.<name>, buffer.<name>, exp_avg.<name>, exp_avg_sq.<name>,
///                        top<i>.<name> (the best validations' weights)
/// ```
///
/// A checkpoint is written into a temporary folder, flushed to disk, renamed into place,
/// and only then named in `current` (itself replaced by a rename), so a kill or a full
/// disk at any moment leaves the previous checkpoint intact.
struct TrainingCheckpointStore {
    let directory: URL
    static let format = 1

    var pointer: URL { directory.appendingPathComponent("current") }
    var exists: Bool { FileManager.default.fileExists(atPath: pointer.path) }

    struct State: Codable {
        var format: Int
        var fingerprint: String
        var optimizerStep: Int
        var batchesTracked: Int
        var progress: TrainingProgress
    }

    func save(model: CedTrainingModel, optimizer: CedAdamW, progress: TrainingProgress, fingerprint: String) throws {
        let fm = FileManager.default
        do {
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        } catch {
            throw TrainingError(.checkpoint, file: directory.path, reason: "cannot create the checkpoint folder (\(error.localizedDescription))")
        }
        let name = "step-\(progress.globalStep)"
        let temp = directory.appendingPathComponent(".tmp-\(UUID().uuidString)")
        var done = false
        defer { if !done { try? fm.removeItem(at: temp) } }
        do {
            try fm.createDirectory(at: temp, withIntermediateDirectories: false)
            var tensors: [String: Tensor] = [:]
            for p in model.table.parameters { tensors["param.\(p.name)"] = model.parameter(p.name) }
            let bn = model.table.initBN
            tensors["buffer.\(bn.runningMean.name)"] = Tensor(shape: [model.runningMean.count], scalars: model.runningMean)
            tensors["buffer.\(bn.runningVariance.name)"] = Tensor(shape: [model.runningVariance.count], scalars: model.runningVariance)
            for (k, v) in optimizer.stateTensors() { tensors[k] = v }
            for (i, state) in progress.topStates.enumerated() { for (k, v) in state.tensors { tensors["top\(i).\(k)"] = v } }
            let stateFile = temp.appendingPathComponent("state.safetensors")
            try SafeTensorsFile.write(tensors, metadata: ["format": "ced-finetune"], to: stateFile)
            let state = State(format: Self.format, fingerprint: fingerprint, optimizerStep: optimizer.step,
                              batchesTracked: model.batchesTracked, progress: progress)
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            let json = temp.appendingPathComponent("state.json")
            try enc.encode(state).write(to: json)
            try Self.sync(stateFile)
            try Self.sync(json)
            let final = directory.appendingPathComponent(name)
            if fm.fileExists(atPath: final.path) { try fm.removeItem(at: final) }
            guard rename(temp.path, final.path) == 0 else { throw TrainingError(.checkpoint, file: final.path, reason: String(cString: strerror(errno))) }
            done = true
            let tmpPointer = directory.appendingPathComponent(".current-\(UUID().uuidString)")
            try Data(name.utf8).write(to: tmpPointer)
            try Self.sync(tmpPointer)
            guard rename(tmpPointer.path, pointer.path) == 0 else {
                try? fm.removeItem(at: tmpPointer)
                throw TrainingError(.checkpoint, file: pointer.path, reason: String(cString: strerror(errno)))
            }
        } catch let e as TrainingError {
            throw e
        } catch {
            throw TrainingError(.checkpoint, file: directory.path, reason: "cannot write the checkpoint (\(error.localizedDescription))")
        }
        // Older checkpoints are no longer needed.
        for entry in (try? fm.contentsOfDirectory(atPath: directory.path)) ?? [] where entry.hasPrefix("step-") && entry != name {
            try? fm.removeItem(at: directory.appendingPathComponent(entry))
        }
    }

    /// Restores the newest checkpoint into `model` and `optimizer`.
    func load(into model: CedTrainingModel, optimizer: CedAdamW, fingerprint: String) throws -> TrainingProgress {
        func fail(_ why: String) -> TrainingError { TrainingError(.checkpoint, file: directory.path, reason: why) }
        guard let name = try? String(contentsOf: pointer, encoding: .utf8) else { throw fail("cannot read \(pointer.lastPathComponent)") }
        let dir = directory.appendingPathComponent(name.trimmingCharacters(in: .whitespacesAndNewlines))
        let state: State
        do {
            state = try JSONDecoder().decode(State.self, from: Data(contentsOf: dir.appendingPathComponent("state.json")))
        } catch {
            throw fail("the checkpoint \(dir.lastPathComponent) cannot be read (\(error.localizedDescription)); delete the folder to start over")
        }
        guard state.format == Self.format else { throw fail("checkpoint format \(state.format) is not \(Self.format)") }
        guard state.fingerprint == fingerprint else {
            throw fail("the checkpoint belongs to a run with other data, model or options; resume with exactly the options of that run, or delete the folder to start over")
        }
        let file = try SafeTensorsFile(contentsOf: dir.appendingPathComponent("state.safetensors"))
        for p in model.table.parameters {
            guard file.info("param.\(p.name)") != nil else { throw fail("the checkpoint has no tensor param.\(p.name)") }
            try model.setParameter(p.name, try file.tensor("param.\(p.name)"))
        }
        let bn = model.table.initBN
        model.runningMean = try file.tensor("buffer.\(bn.runningMean.name)").scalars
        model.runningVariance = try file.tensor("buffer.\(bn.runningVariance.name)").scalars
        model.batchesTracked = state.batchesTracked
        var moments: [String: Tensor] = [:]
        var top = [[String: Tensor]](repeating: [:], count: state.progress.top.count)
        for n in file.names {
            if n.hasPrefix("exp_avg") { moments[n] = try file.tensor(n) }
            if n.hasPrefix("top"), let dot = n.firstIndex(of: "."), let i = Int(n[n.index(n.startIndex, offsetBy: 3)..<dot]), i < top.count {
                top[i][String(n[n.index(after: dot)...])] = try file.tensor(n)
            }
        }
        try optimizer.restore(moments, step: state.optimizerStep)
        var progress = state.progress
        progress.topStates = top.map { StateDict(tensors: $0, source: dir.path) }
        return progress
    }

    func remove() { try? FileManager.default.removeItem(at: directory) }

    /// fsync, so a checkpoint named in `current` is on disk.
    static func sync(_ url: URL) throws {
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw TrainingError(.checkpoint, file: url.path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        if fsync(fd) != 0 { throw TrainingError(.checkpoint, file: url.path, reason: "fsync: \(String(cString: strerror(errno)))") }
    }
}
