import ArgumentParser
import CED
import Foundation

struct Embed: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write CED embeddings of audio files, for search, clustering and downstream classifiers.",
        discussion: """
            --pool mean (default) gives one vector per file: the mean of the encoder's last \
            hidden state over all tokens (all chunks of a long file). --pool none gives every \
            token, [tokens, embed_dim] per file (tokens of consecutive 10 s chunks one after \
            the other, frequency-major within a chunk).

            Formats:
              npy          mean: one [files, embed_dim] float32 array; the row order is \
            written to OUTPUT.files.txt. none: OUTPUT is a directory with one .npy per file.
              safetensors  one float32 tensor per file, named by the file path.
              jsonl        one {"file", "shape", "embedding"} object per line.

            Examples:
              ced embed --output clips.npy clips/
              ced embed --pool none --format safetensors --output tokens.safetensors a.wav b.wav
            """)

    @OptionGroup var modelOptions: ModelOptions

    @Argument(help: ArgumentHelp("Audio files, directories, or - for standard input.", valueName: "path"))
    var paths: [String] = []

    @Option(help: ArgumentHelp("mean (one vector per file) or none (every token).", valueName: "mean|none"))
    var pool: Pooling = .mean

    @Option(help: ArgumentHelp("npy, safetensors or jsonl (default: from the output's extension, else npy).", valueName: "format"))
    var format: EmbedFormat?

    @Option(name: .shortAndLong, help: ArgumentHelp("Where to write (a file; a directory for --pool none with npy).", valueName: "path"))
    var output: String

    @OptionGroup var common: CommonOptions

    enum Pooling: String, ExpressibleByArgument { case mean, none }
    enum EmbedFormat: String, ExpressibleByArgument { case npy, safetensors, jsonl }

    func validate() throws {
        if paths.isEmpty { throw ValidationError("give at least one audio file, directory or - (stdin)") }
    }

    var resolvedFormat: EmbedFormat {
        if let format { return format }
        switch URL(fileURLWithPath: output).pathExtension.lowercased() {
        case "safetensors": return .safetensors
        case "jsonl", "json": return .jsonl
        default: return .npy
        }
    }

    func run() throws {
        let (files, missing) = expandInputs(paths)
        let tagger = try modelOptions.tagger(quiet: common.quiet)
        let pool = self.pool
        var names: [String] = []
        var vectors: [Tensor] = []
        let format = resolvedFormat
        var jsonlHandle: FileHandle?
        if format == .jsonl {
            guard FileManager.default.createFile(atPath: output, contents: nil),
                  let h = FileHandle(forWritingAtPath: output) else { throw ValidationError("cannot write \(output)") }
            jsonlHandle = h
        }
        if format == .npy && pool == .none {
            try FileManager.default.createDirectory(atPath: output, withIntermediateDirectories: true)
        }
        let failed = processInputs(files, missing: missing, jobs: common.jobs, quiet: common.quiet, output: Output()) { file in
            let mel = try tagger.features(contentsOf: URL(fileURLWithPath: file.path)).mel
            return pool == .mean ? try tagger.model.encoder.embedding(mel) : try tagger.model.encoder(mel).lastHiddenState
        } consume: { file, t in
            switch format {
            case .jsonl:
                jsonlHandle?.write(Data((try CedJSONText.encode(CedEmbeddingResult(file: file.name, tensor: t)) + "\n").utf8))
            case .npy where pool == .none:
                let base = (file.name == "-" ? "stdin" : file.name).replacingOccurrences(of: "/", with: "_")
                try CedNPYEncoder.write(t, to: URL(fileURLWithPath: output).appendingPathComponent(base + ".npy"))
            default:
                names.append(file.name)
                vectors.append(t)
            }
        }
        try? jsonlHandle?.close()
        let url = URL(fileURLWithPath: output)
        switch format {
        case .npy where pool == .mean:
            let c = tagger.config.embedDim
            try CedNPYEncoder.write(Tensor(shape: [vectors.count, c], scalars: vectors.flatMap(\.scalars)), to: url)
            try (names.joined(separator: "\n") + (names.isEmpty ? "" : "\n"))
                .write(to: URL(fileURLWithPath: output + ".files.txt"), atomically: true, encoding: .utf8)
        case .safetensors:
            var seen: [String: Int] = [:]
            var tensors: [String: Tensor] = [:]
            for (n, t) in zip(names, vectors) {
                seen[n, default: 0] += 1
                tensors[seen[n]! > 1 ? "\(n)#\(seen[n]!)" : n] = t
            }
            try SafeTensorsFile.write(tensors, metadata: ["model": modelOptions.model, "pool": pool.rawValue], to: url)
        default: break
        }
        if failed > 0 { throw ExitCode(1) }
    }
}
