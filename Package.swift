// swift-tools-version:6.0
import PackageDescription

// `ced serve` (the CEDServer target, Hummingbird 2) is built with Swift 6.1 or later: the
// server packages' current releases need it. With Swift 6.0 (e.g. Debian's swiftlang 6.0.3)
// the package is the `CED` library and `ced` without `serve`, and its only dependency is
// swift-argument-parser.
#if compiler(>=6.1)
let withServer = true
#else
let withServer = false
#endif

let serverPackages: [Package.Dependency] = [
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
    .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.0.0"),
    .package(url: "https://github.com/apple/swift-nio", from: "2.0.0"),
    .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.0.0"),
    .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.0.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.5.0"),
]

// `ced serve`: HTTP and WebSocket API over the library (Hummingbird 2).
let serverTarget: Target = .target(
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
    path: "Sources/CEDServer")

let serverTestDependencies: [Target.Dependency] = [
    "CEDServer",
    .product(name: "HummingbirdTesting", package: "hummingbird"),
    .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
    .product(name: "HummingbirdWSTesting", package: "hummingbird-websocket"),
    .product(name: "NIOWebSocket", package: "swift-nio"),
]

let package = Package(
    name: "ced-swift",
    // macOS 14 / iOS 17: what hummingbird-websocket (ced serve) declares; CED itself needs less.
    platforms: [.macOS(.v14), .iOS(.v17)],
    products: [
        .library(name: "CED", targets: ["CED"]),
        .executable(name: "ced", targets: ["ced"]),
    ] + (withServer ? [.library(name: "CEDServer", targets: ["CEDServer"])] : []),
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // and, with Swift 6.1+, the server's packages (CEDServer only: `CED` depends on none).
    ] + (withServer ? serverPackages : []),
    targets: [
        // Innermost compute microkernels only (C with per-function target attributes and
        // runtime CPU dispatch). All logic lives in the Swift `CED` target.
        .target(name: "CEDKernels", path: "Sources/CEDKernels"),
        // The library: no server dependency (an app that adds `CED` pulls in no SwiftNIO).
        .target(name: "CED", dependencies: ["CEDKernels"], path: "Sources/CED"),
        .executableTarget(
            name: "ced",
            dependencies: ["CED", .product(name: "ArgumentParser", package: "swift-argument-parser")]
                + (withServer ? ["CEDServer"] : []),
            path: "Sources/ced"),
        .testTarget(
            // Depends on `ced` so the CLI tests find the freshly built tool.
            name: "CEDTests",
            dependencies: ["CED", "ced"] + (withServer ? serverTestDependencies : []),
            path: "Tests/CEDTests",
            resources: [.copy("Fixtures")]),
    ] + (withServer ? [serverTarget] : []),
    swiftLanguageModes: [.v5]
)
