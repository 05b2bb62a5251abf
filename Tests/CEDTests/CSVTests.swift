import XCTest
@testable import CED

/// The one CSV reader (labels, training data, thresholds) and the per-class thresholds file.
final class CSVTests: XCTestCase {
    func testRecords() throws {
        let text = "\u{FEFF}a,\"b, c\",\"say \"\"hi\"\"\"\r\n  # a comment, \"unclosed\n\"two\nlines\",x\n\n,,\n"
        let plain = try CedCSV.records(text)
        XCTAssertEqual(plain.map(\.fields), [["a", "b, c", "say \"hi\""], ["  # a comment", " \"unclosed"], ["two\nlines", "x"], [""], ["", "", ""]])
        XCTAssertEqual(plain.map(\.line), [1, 2, 3, 5, 6])
        let commented = try CedCSV.records(text, comments: true)
        XCTAssertEqual(commented.map(\.fields), [["a", "b, c", "say \"hi\""], ["two\nlines", "x"], [""], ["", "", ""]])
        XCTAssertEqual(commented.map(\.line), [1, 3, 5, 6])
        XCTAssertTrue(commented[2].isBlank)
        XCTAssertThrowsError(try CedCSV.records("a,b\nc,\"d\ne\n", file: "f.csv")) { error in
            XCTAssertEqual(error as? CedFileError, CedFileError(.malformed, file: "f.csv", line: 2, reason: "unterminated quoted field"))
        }
        XCTAssertEqual(["plain", "a,b", "say \"hi\"", "two\nlines"].map(CedCSV.field), ["plain", "\"a,b\"", "\"say \"\"hi\"\"\"", "\"two\nlines\""])
    }

    func testClassThresholds() throws {
        let labels = ["Speech", "Dog", "Bark", "bark"]
        let csv = "label,threshold,release\n# birds later\nSpeech, 0.6 ,0.3\ndog,0.4\n3,0.9,\n"
        let t = try CedEventOptions.classThresholds(csv: csv, file: "t.csv", labels: labels)
        XCTAssertEqual(t, [CedClassThreshold(index: 0, threshold: 0.6, release: 0.3), CedClassThreshold(index: 1, threshold: 0.4),
                           CedClassThreshold(index: 3, threshold: 0.9)])
        let options = try CedEventOptions(classCount: 4, threshold: nil, classThresholds: t, release: 0.5)
        XCTAssertEqual(options.rules, [try CedEventRule(threshold: 0.6, release: 0.3), try CedEventRule(threshold: 0.4, release: 0.4),
                                       nil, try CedEventRule(threshold: 0.9, release: 0.5)])
        for (text, line, reason) in [("BARK,0.5\n", 1, "'BARK' is not a class of the model (did you mean 'Bark', 'bark'?)"),
                                     ("Dog,0.5\n1,0.6\n", 2, "class 'Dog' was already given on line 1"),
                                     ("Dog,0.5,0.7\n", 1, "the release 0.7 is above the threshold 0.5"),
                                     ("label,threshold\nDog,high\n", 2, "the threshold 'high' is not a number"),
                                     ("Dog\n", 1, "expected label,threshold[,release], found 1 field(s)")] {
            XCTAssertThrowsError(try CedEventOptions.classThresholds(csv: text, file: "t.csv", labels: labels), text) { error in
                XCTAssertEqual(error as? CedFileError, CedFileError(.malformed, file: "t.csv", line: line, reason: reason), text)
            }
        }
        XCTAssertThrowsError(try CedEventOptions.classThresholds(csv: "label,threshold\n", file: "t.csv", labels: labels)) {
            XCTAssertEqual(($0 as? CedFileError)?.description, "t.csv: no class thresholds in the file")
        }
    }
}
