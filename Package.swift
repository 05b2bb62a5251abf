// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "ced-swift",
    // macOS 14 / iOS 17: what hummingbird-websocket (ced serve) declares; CED itself needs less.
    platforms: [.macOS(.v14), .iOS(.v17)],
    products: [
        .library(name: "CED", targets: ["CED"]),
        .library(name: "CEDServer", targets: ["CEDServer"]),
        .executable(name: "ced", targets: ["ced"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The server only (`CEDServer`): the `CED` library depends on none of these.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0", traits: []),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
    ],
    targets: [
        // Innermost compute microkernels only (C with per-function target attributes and
        // runtime CPU dispatch). All logic lives in the Swift `CED` target.
        .target(name: "CEDKernels", path: "Sources/CEDKernels"),
        // The library: no server dependency (an app that adds `CED` pulls in no SwiftNIO).
        .target(name: "CED", dependencies: ["CEDKernels"], path: "Sources/CED"),
        // `ced serve`: HTTP and WebSocket API over the library (Hummingbird 2).
        .target(
            name: "CEDServer",
            dependencies: [
                "CED",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/CEDServer"),
        .executableTarget(
            name: "ced",
            dependencies: ["CED", "CEDServer", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Sources/ced"),
        .testTarget(
            // Depends on `ced` so the CLI tests find the freshly built tool.
            name: "CEDTests",
            dependencies: [
                "CED", "ced", "CEDServer",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "HummingbirdWSTesting", package: "hummingbird-websocket"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "Tests/CEDTests",
            resources: [.copy("Fixtures")]),
    ],
    swiftLanguageModes: [.v5]
)
