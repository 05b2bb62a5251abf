import XCTest
@testable import CED

final class ConfigTests: XCTestCase {
    func testDefaults() throws {
        let c = try CedConfig.decode(Data("{}".utf8))
        XCTAssertEqual(c.embedDim, 768)
    }
}
