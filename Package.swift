// swift-tools-version: 6.1
import PackageDescription

/// Upcoming features on for every target, so the whole package is checked the same way.
let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Lifeboat",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "lifeboat", targets: ["lifeboat"]),
        .executable(name: "lifeboatd", targets: ["lifeboatd"]),
        .library(name: "LifeboatRepository", targets: ["LifeboatRepository"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-system", from: "1.8.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CFuse3", pkgConfig: "fuse3", providers: [.apt(["libfuse3-dev"])]),
        .target(name: "CLifeboatPosix"),
        .target(name: "LifeboatCore", swiftSettings: strictSettings),
        .target(name: "LifeboatAPI", dependencies: ["LifeboatCore"], swiftSettings: strictSettings),
        .target(
            name: "LifeboatSystem",
            dependencies: [
                "LifeboatCore", "CLifeboatPosix", .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "LifeboatRepository",
            dependencies: [
                "LifeboatCore", "LifeboatSystem", "CZstd", "CLifeboatPosix",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "LifeboatJournal", dependencies: ["LifeboatCore", "LifeboatSystem", "CLifeboatPosix"],
            swiftSettings: strictSettings),
        .target(
            name: "LifeboatCapture",
            dependencies: ["LifeboatCore", "LifeboatSystem", "LifeboatJournal", "CFuse3", "CLifeboatPosix"],
            swiftSettings: strictSettings
        ),
        .target(
            name: "LifeboatCluster",
            dependencies: [
                "LifeboatCore", "LifeboatSystem", "LifeboatJournal",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strictSettings
        ),
        .target(
            name: "LifeboatAgent",
            dependencies: [
                "LifeboatCore", "LifeboatSystem", "LifeboatAPI", "LifeboatJournal", "LifeboatCapture",
                "LifeboatRepository",
                "LifeboatCluster", "CLifeboatPosix",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "lifeboatd",
            dependencies: [
                "LifeboatCore", "LifeboatSystem", "LifeboatAgent",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "lifeboat",
            dependencies: [
                "LifeboatCore", "LifeboatAPI", "LifeboatRepository", "LifeboatJournal", "LifeboatAgent",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "LifeboatCoreTests", dependencies: ["LifeboatCore"], swiftSettings: strictSettings),
        .testTarget(name: "LifeboatAPITests", dependencies: ["LifeboatAPI", "LifeboatCore"], swiftSettings: strictSettings),
        .testTarget(
            name: "LifeboatSystemTests",
            dependencies: [
                "LifeboatSystem", "LifeboatCore", .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: strictSettings),
        .testTarget(
            name: "LifeboatCaptureTests",
            dependencies: ["LifeboatCapture", "LifeboatJournal", "LifeboatCore", "CLifeboatPosix", "LifeboatSystem"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "LifeboatAgentTests",
            dependencies: [
                "LifeboatAgent", "LifeboatAPI", "LifeboatCore", "LifeboatCluster", "LifeboatJournal", "LifeboatSystem",
                "LifeboatCapture",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "InMemoryLogging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "ServiceLifecycleTestKit", package: "swift-service-lifecycle"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strictSettings),
        .testTarget(
            name: "LifeboatClusterTests",
            dependencies: [
                "LifeboatCluster", "LifeboatJournal", "LifeboatCore", "LifeboatSystem",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings),
        .testTarget(
            name: "LifeboatJournalTests", dependencies: ["LifeboatJournal", "LifeboatCore", "LifeboatSystem"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "LifeboatRepositoryTests",
            dependencies: ["LifeboatRepository", "LifeboatCore", "CLifeboatPosix", "LifeboatSystem"],
            swiftSettings: strictSettings
        ),
    ]
)
