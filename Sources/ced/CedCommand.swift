import ArgumentParser
import CED
import Foundation

@main
struct CedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ced",
        abstract: "Tag sounds with CED audio transformers (527 AudioSet classes).",
        discussion: """
            Models are Hugging Face ids (downloaded once into the huggingface_hub cache),
            local folders (config.json + model.safetensors or pytorch_model.bin) or single
            checkpoint files, including the authors' original .pt files.

            Examples:
              ced tag recording.wav
              ced tag --model mispeech/ced-base --top-k 10 --format json clips/
              ced tag --window 10 field-recording.flac
              ced tag --events --threshold 0.7 --format audacity field-recording.flac > labels.txt
              ced listen --input default
              ced serve --model mispeech/ced-tiny
              ced embed --output embeddings.npy clips/
              ced info mispeech/ced-tiny
            """,
        version: cedVersion,
        subcommands: [Tag.self, Listen.self, Serve.self, Embed.self, Info.self, Download.self, TrainHead.self, Finetune.self, Distill.self,
                      Bench.self, BenchTrain.self])

    /// Runs a command with the tool's exit codes: 0 success, 1 when something failed
    /// (some files, a model that cannot be loaded), 2 for usage errors.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                exit(withError: error)  // --help, --version
            }
            if let e = error as? ExitCode { Foundation.exit(e.rawValue) }
            if code == .validationFailure {
                FileHandle.standardError.write(Data((fullMessage(for: error) + "\n").utf8))
                Foundation.exit(2)
            }
            Terminal.error(describe(error))
            Foundation.exit(1)
        }
    }
}
