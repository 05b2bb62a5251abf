// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "ced-swift",
    platforms: [.macOS(.v13), .iOS(.v16)],
    products: [
        .library(name: "CED", targets: ["CED"]),
        .executable(name: "ced", targets: ["ced"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // Innermost compute microkernels only (C with per-function target attributes and
        // runtime CPU dispatch). All logic lives in the Swift `CED` target.
        .target(name: "CEDKernels", path: "Sources/CEDKernels"),
        .target(name: "CED", dependencies: ["CEDKernels"], path: "Sources/CED"),
        .executableTarget(
            name: "ced",
            dependencies: ["CED", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/ced"),
        .testTarget(
            // Depends on `ced` so the CLI tests find the freshly built tool.
            name: "CEDTests", dependencies: ["CED", "ced"], path: "Tests/CEDTests",
            resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
