import XCTest
@testable import CED

final class SafeTensorsTests: XCTestCase {
    func testReadsGolden() throws {
        let g = try Reference.golden("micro")
        let mel = try g.tensor("snap_16k_mono_s16.wav/mel")
        XCTAssertEqual(mel.shape, [64, 101])
    }
}
