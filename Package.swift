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
        .library(name: "LifeboatRepository", targets: ["LifeboatRepository"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
    ],
    targets: [
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .target(name: "CLifeboatPosix"),
        .target(name: "LifeboatCore", swiftSettings: strictSettings),
        .target(
            name: "LifeboatRepository",
            dependencies: [
                "LifeboatCore", "CZstd", "CLifeboatPosix",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings
        ),
        .target(name: "LifeboatJournal", dependencies: ["LifeboatCore"], swiftSettings: strictSettings),
        .executableTarget(
            name: "lifeboat",
            dependencies: [
                "LifeboatCore", "LifeboatRepository",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "LifeboatCoreTests", dependencies: ["LifeboatCore"], swiftSettings: strictSettings),
        .testTarget(
            name: "LifeboatJournalTests", dependencies: ["LifeboatJournal", "LifeboatCore"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "LifeboatRepositoryTests",
            dependencies: ["LifeboatRepository", "LifeboatCore", "CLifeboatPosix"],
            swiftSettings: strictSettings
        ),
    ]
)
