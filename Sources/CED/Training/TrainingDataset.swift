import Foundation

/// One labelled audio file for head training.
public struct TrainingExample: Sendable, Hashable {
    /// The audio file (any format `Waveform` decodes).
    public var file: URL
    /// Its class names: exactly one for single-label data, one or more for multi-label data.
    public var labels: [String]

    public init(file: URL, labels: [String]) {
        self.file = file
        self.labels = labels
    }
}

/// Labelled audio files and their classes, from a folder per class or a CSV.
///
/// - A **folder per class**: `DIR/<class name>/…/*.wav` (any depth below the class folder;
///   hidden files and folders are skipped, files without an `AudioFiles` extension ignored).
/// - A **CSV** `file,label[;label...]`: one row per file, paths relative to the CSV's folder
///   (or absolute), several labels separated by `;` for multi-label data, fields with commas
///   double-quoted. An optional header row `file,label` (or `filename`/`path`,
///   `labels`/`class`) is skipped.
///
/// Classes are ordered by name (Unicode order); that order is the model's output order.
public struct TrainingDataset: Sendable {
    public var examples: [TrainingExample]
    /// Class names in output order.
    public var classes: [String]
    /// Things worth telling the user that did not stop loading (ignored files).
    public var warnings: [String]

    /// A dataset from examples; `classes` defaults to every label used, sorted.
    public init(examples: [TrainingExample], classes: [String]? = nil, warnings: [String] = []) {
        self.examples = examples
        self.classes = classes ?? Array(Set(examples.flatMap(\.labels))).sorted()
        self.warnings = warnings
    }

    /// Loads a folder per class (when `url` is a directory) or a CSV (otherwise).
    public static func load(from url: URL, multiLabel: Bool = false) throws -> TrainingDataset {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDir) else {
            throw TrainingError(.notFound, file: url.path, reason: "no such file or folder (expected a folder per class or a CSV file,label[;label...])")
        }
        return isDir.boolValue ? try folderPerClass(at: url) : try csv(at: url, multiLabel: multiLabel)
    }

    // MARK: Folder per class

    /// Reads `dir/<class>/…` (see the type's documentation).
    public static func folderPerClass(at dir: URL) throws -> TrainingDataset {
        let fm = FileManager.default
        let entries: [String]
        do {
            entries = try fm.contentsOfDirectory(atPath: dir.path).sorted()
        } catch {
            throw TrainingError(.notFound, file: dir.path, reason: "cannot list the folder (\(error.localizedDescription))")
        }
        var examples: [TrainingExample] = []
        var warnings: [String] = []
        var classes: [String] = []
        var looseFiles = 0
        for name in entries where !name.hasPrefix(".") {
            let url = dir.appendingPathComponent(name)
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: url.path, isDirectory: &isDir) else { continue }
            guard isDir.boolValue else {
                if AudioFiles.isAudio(name) { looseFiles += 1 }
                continue
            }
            let files = try audioFiles(under: url)
            guard !files.isEmpty else {
                throw TrainingError(.emptyDataset, file: url.path,
                                    reason: "class folder '\(name)' holds no audio files (recognised extensions: \(AudioFiles.extensions.sorted().joined(separator: ", ")))")
            }
            classes.append(name)
            examples += files.map { TrainingExample(file: $0, labels: [name]) }
        }
        if looseFiles > 0 {
            warnings.append("ignored \(looseFiles) audio file(s) directly in \(dir.path): put each file in the folder of its class")
        }
        guard !examples.isEmpty else {
            throw TrainingError(.emptyDataset, file: dir.path,
                                reason: looseFiles > 0
                                    ? "no class folders: the audio files must sit in one subfolder per class (DIR/<class>/<file>)"
                                    : "no audio files found (expected one subfolder per class, DIR/<class>/<file>)")
        }
        return TrainingDataset(examples: examples, classes: classes, warnings: warnings)
    }

    /// Audio files below `dir`, recursively, sorted by path; hidden entries skipped.
    static func audioFiles(under dir: URL) throws -> [URL] {
        let fm = FileManager.default
        var out: [URL] = []
        func walk(_ d: URL) throws {
            let names: [String]
            do { names = try fm.contentsOfDirectory(atPath: d.path).sorted() } catch {
                throw TrainingError(.notFound, file: d.path, reason: "cannot list the folder (\(error.localizedDescription))")
            }
            for name in names where !name.hasPrefix(".") {
                let u = d.appendingPathComponent(name)
                var isDir: ObjCBool = false
                guard fm.fileExists(atPath: u.path, isDirectory: &isDir) else { continue }
                if isDir.boolValue {
                    try walk(u)
                } else if AudioFiles.isAudio(name) {
                    out.append(u)
                }
            }
        }
        try walk(dir)
        return out
    }

    // MARK: CSV

    /// Reads a CSV `file,label[;label...]` (see the type's documentation). In single-label
    /// mode a row with several labels is an error.
    public static func csv(at url: URL, multiLabel: Bool = false) throws -> TrainingDataset {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw TrainingError(.notFound, file: url.path, reason: "cannot read the CSV (\(error.localizedDescription))")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw TrainingError(.malformedCSV, file: url.path, reason: "not UTF-8 text")
        }
        return try csv(text: text, file: url.path, baseDirectory: url.deletingLastPathComponent(), multiLabel: multiLabel)
    }

    /// Parses CSV text; relative paths are resolved against `baseDirectory`.
    public static func csv(text: String, file: String = "<csv>", baseDirectory: URL, multiLabel: Bool = false) throws -> TrainingDataset {
        let records: [CedCSV.Record]
        do {
            records = try CedCSV.records(text, file: file)
        } catch let e as CedFileError {
            throw TrainingError(.malformedCSV, file: file, line: e.line, reason: e.reason)
        }
        var examples: [TrainingExample] = []
        var seen: [String: Int] = [:]
        var missing: [(line: Int, path: String)] = []
        for (i, r) in records.enumerated() {
            let fields = r.fields.map { $0.trimmingCharacters(in: .whitespaces) }
            if fields.allSatisfy(\.isEmpty) { continue }
            if i == 0, fields.count == 2,
               ["file", "filename", "file_name", "path", "audio"].contains(fields[0].lowercased()),
               ["label", "labels", "class", "classes"].contains(fields[1].lowercased()) {
                continue
            }
            guard fields.count == 2 else {
                throw TrainingError(.malformedCSV, file: file, line: r.line,
                                    reason: "\(fields.count) field(s), expected 2: file,label[;label...] (quote fields that contain commas)")
            }
            guard !fields[0].isEmpty else {
                throw TrainingError(.malformedCSV, file: file, line: r.line, reason: "empty file name")
            }
            var labels: [String] = []
            for l in fields[1].split(separator: ";", omittingEmptySubsequences: false) {
                let t = l.trimmingCharacters(in: .whitespaces)
                if !t.isEmpty && !labels.contains(t) { labels.append(t) }
            }
            guard !labels.isEmpty else {
                throw TrainingError(.malformedCSV, file: file, line: r.line, reason: "no label for '\(fields[0])'")
            }
            if !multiLabel && labels.count > 1 {
                throw TrainingError(.malformedCSV, file: file, line: r.line,
                                    reason: "'\(fields[0])' has \(labels.count) labels (\(labels.joined(separator: "; "))); single-label training takes one per file (use multi-label training for several)")
            }
            let expanded = (fields[0] as NSString).expandingTildeInPath
            let path = expanded.hasPrefix("/") ? URL(fileURLWithPath: expanded)
                : baseDirectory.appendingPathComponent(expanded)
            let resolved = path.standardizedFileURL
            if let previous = seen[resolved.path] {
                throw TrainingError(.malformedCSV, file: file, line: r.line,
                                    reason: "'\(fields[0])' is already listed on line \(previous)")
            }
            seen[resolved.path] = r.line
            var isDir: ObjCBool = false
            if !FileManager.default.fileExists(atPath: resolved.path, isDirectory: &isDir) || isDir.boolValue {
                missing.append((r.line, resolved.path))
            }
            examples.append(TrainingExample(file: resolved, labels: labels))
        }
        if let first = missing.first {
            let list = missing.prefix(10).map { "line \($0.line): \($0.path)" }.joined(separator: "; ")
            throw TrainingError(.notFound, file: file, line: first.line,
                                reason: "\(missing.count) listed audio file(s) do not exist: \(list)\(missing.count > 10 ? "; …" : "")")
        }
        guard !examples.isEmpty else {
            throw TrainingError(.emptyDataset, file: file, reason: "the CSV lists no files (expected rows file,label[;label...])")
        }
        return TrainingDataset(examples: examples)
    }

    // MARK: Checks

    /// Examples per class, in class order.
    public var countsPerClass: [Int] {
        let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        var counts = [Int](repeating: 0, count: classes.count)
        for e in examples { for l in e.labels { if let i = index[l] { counts[i] += 1 } } }
        return counts
    }

    /// Checks that the data can train a head and, when `validationSplit > 0`, be validated:
    /// at least two classes, and at least two examples per class (one to train on, one to
    /// validate on; one suffices without validation). Multi-label data with a single label
    /// would have no negative examples, so it needs two classes as well.
    public func check(validationSplit: Double) throws {
        guard !examples.isEmpty else { throw TrainingError(.emptyDataset, reason: "the dataset has no examples") }
        if classes.count < 2 {
            throw TrainingError(.notEnoughExamples,
                                reason: "training needs at least 2 classes, found \(classes.count) (\(classes.joined(separator: ", ")))")
        }
        let needed = validationSplit > 0 ? 2 : 1
        let small = zip(classes, countsPerClass).filter { $0.1 < needed }
        if !small.isEmpty {
            let list = small.map { "'\($0.0)' (\($0.1) example\($0.1 == 1 ? "" : "s"))" }.joined(separator: ", ")
            throw TrainingError(.notEnoughExamples,
                                reason: "too few examples in class\(small.count > 1 ? "es" : "") \(list): every class needs at least \(needed)"
                                    + (needed == 2 ? ", one to train on and one to validate on (or train without a validation split)" : ""))
        }
    }
}
