import XCTest
@testable import CED

/// The result encoders of the library, against hand-written documents.
final class OutputTests: XCTestCase {
    let tags = CedTagResult(file: "a,b.wav", duration: 2.5, model: "m", labels: [
        CedPrediction(index: 3, label: "Dog", score: 0.75), CedPrediction(index: 0, label: "Speech, male", score: 0.125),
    ])
    var windowed: CedTagResult {
        var r = tags
        r.segments = [.init(start: 0, end: 1.25, labels: [CedPrediction(index: 3, label: "Dog", score: 0.5)])]
        return r
    }

    let events = CedEventResult(file: "rec.wav", duration: 9, model: "m", events: [
        CedEvent(index: 2, label: "Bird\tcall", start: 0.12345, end: 61.5, score: 0.875, meanScore: 0.5, windowCount: 3, ongoing: false, id: 7),
    ])

    func testJSON() throws {
        let json = CedJSONEncoder<CedTagResult>()
        XCTAssertEqual(try json.document([tags, windowed]), """
            [
            {"file": "a,b.wav", "duration_s": 2.5, "model": "m", "labels": [{"index": 3, "label": "Dog", "score": 0.75}, \
            {"index": 0, "label": "Speech, male", "score": 0.125}]},
            {"file": "a,b.wav", "duration_s": 2.5, "model": "m", "labels": [{"index": 3, "label": "Dog", "score": 0.75}, \
            {"index": 0, "label": "Speech, male", "score": 0.125}], "segments": [{"start": 0.0, "end": 1.25, \
            "labels": [{"index": 3, "label": "Dog", "score": 0.5}]}]}
            ]

            """)
        XCTAssertEqual(try json.document([]), "[]\n")
        let line = #"{"file": "rec.wav", "duration_s": 9.0, "model": "m", "events": [{"label": "Bird\tcall", "index": 2, "start": 0.123, "end": 61.5, "score": 0.875, "mean_score": 0.5}]}"#
        XCTAssertEqual(try CedJSONLinesEncoder<CedEventResult>().document([events]), line + "\n")
        // What a client decodes is the result, times as reported.
        let decoded = try JSONDecoder().decode(CedEventResult.self, from: Data(line.utf8))
        XCTAssertEqual(decoded.events.map(\.start), [0.123])
        XCTAssertEqual(try CedJSONText.encode(decoded), line)
        XCTAssertEqual(try JSONDecoder().decode(CedTagResult.self, from: Data(try CedJSONText.encode(windowed).utf8)), windowed)
        // Live reports: ids, updates, wall-clock times; non-finite numbers and control characters.
        var ongoing = events.events[0]
        ongoing.ongoing = true
        XCTAssertEqual(try CedJSONText.encode(CedEventReport(ongoing, wallClockStart: Date(timeIntervalSince1970: 0))),
                       #"{"label": "Bird\tcall", "index": 2, "start": 0.123, "end": 61.5, "score": 0.875, "mean_score": 0.5, "id": 7, "#
                       + #""ongoing": true, "wall_start": "1970-01-01T00:00:00.123Z", "wall_end": "1970-01-01T00:01:01.500Z"}"#)
        XCTAssertEqual(try CedJSONText.encode([Float.nan, 1e-5]), "[null, 1e-05]")
        XCTAssertEqual(CedJSONText.quoted("a\"\\\u{1}é"), #""a\"\\\u0001é""#)
    }

    func testCSVTableAndTracks() throws {
        XCTAssertEqual(try CedCSVEncoder<CedTagResult>(windowed: false).document([tags]),
                       "file,rank,index,label,score\n\"a,b.wav\",1,3,Dog,0.75\n\"a,b.wav\",2,0,\"Speech, male\",0.125\n")
        XCTAssertEqual(try CedCSVEncoder<CedTagResult>(windowed: true).document([windowed]),
                       "file,start,end,rank,index,label,score\n\"a,b.wav\",0.0,1.25,1,3,Dog,0.5\n")
        XCTAssertEqual(try CedCSVEncoder<CedEventResult>().document([events]),
                       "file,start,end,index,label,score,mean_score\nrec.wav,0.123,61.5,2,Bird\tcall,0.875,0.5\n")
        let table = CedTableEncoder<CedTagResult>(files: ["a,b.wav"], labels: ["Dog", "Speech, male"], windowed: false)
        XCTAssertEqual(try table.document([tags, CedTagResult(file: "x", duration: 1, model: "m", labels: [])]), """
            FILE     RANK  LABEL          SCORE
            a,b.wav     1  Dog           0.7500
                        2  Speech, male  0.1250
            x        (no class above the threshold)

            """)
        let segments = CedTableEncoder<CedTagResult>(files: ["a,b.wav"], labels: ["Dog"], windowed: true)
        XCTAssertEqual(try segments.document([windowed]), """
            FILE        START       END  RANK  LABEL   SCORE
            a,b.wav      0.00      1.25     1  Dog    0.5000

            """)
        XCTAssertEqual(try CedTableEncoder<CedEventResult>(files: ["rec.wav"], labels: ["Bird\tcall"]).document([events]), """
            FILE         START        END  LABEL       SCORE    MEAN
            rec.wav     0:00.1     1:01.5  Bird\tcall  0.8750  0.5000

            """)
        XCTAssertEqual(try CedAudacityEncoder().document([events]), "0.123450\t61.500000\tBird call\n")
        XCTAssertEqual(try CedRavenEncoder(lowFrequency: 0, highFrequency: 8000).document([events]),
                       "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation\tClass Index\tConfidence"
                       + "\tMean Confidence\n1\tSpectrogram 1\t1\t0.123\t61.500\t0.0\t8000.0\tBird call\t2\t0.875\t0.5\n")
        let live = CedLiveEventTable(labels: ["Bird\tcall"], wallClock: false)
        XCTAssertEqual(live.header + live.row(events.events[0], wallClockStart: nil), """
                 START         END     DUR  LABEL       PEAK   MEAN
                0:00.1      1:01.5    61.4  Bird\tcall   0.88   0.50

            """)
        XCTAssertEqual(TextColumns.clock(3725.06), "1:02:05.1")
    }

    func testTrainingLogLines() throws {
        let step = CedTrainingLogLine(TrainingStepLog(epoch: 1, step: 7, totalSteps: 9, loss: 0.25, lr: 1e-05, gradNorm: 2))
        XCTAssertEqual(try CedJSONText.encode(step), #"{"epoch": 1, "step": 7, "loss": 0.25, "lr": 1e-05, "grad_norm": 2.0}"#)
        let v = CedTrainingLogLine(TrainingValidationLog(epoch: 3, step: 21, accuracy: 0.95, meanAveragePrecision: nil, trainLoss: 0.125, isBest: true))
        XCTAssertEqual(try CedJSONText.encode(v), #"{"epoch": 3, "step": 21, "validation": true, "train_loss": 0.125, "val_accuracy": 0.95, "best": true}"#)
        XCTAssertEqual(v.text(epochs: 10), "epoch  3/10  train loss 0.1250  val acc  95.0%  *")
        let unvalidated = CedTrainingLogLine(TrainingValidationLog(epoch: 3, step: 21, accuracy: nil, meanAveragePrecision: nil,
                                                                   trainLoss: 0.125, isBest: true))
        XCTAssertEqual(unvalidated.text(epochs: 3, metric: "eval"), "epoch 3/3  train loss 0.1250")
        let head = CedTrainingLogLine(epoch: 12, step: 12, trainLoss: 0.5, validationLoss: 0.75, meanAveragePrecision: 0.5, best: true)
        XCTAssertEqual(head.text(epochs: 100), "epoch  12/100  train loss 0.5000  val loss 0.7500  val mAP  50.0%  *")
    }
}
