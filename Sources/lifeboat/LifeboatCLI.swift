import ArgumentParser
import Foundation
import Glibc
import LifeboatCore
import LifeboatRepository

/// The operator's command line. Argument parsing and output only; the work is in the modules.
struct LifeboatCLI: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lifeboat",
        abstract: "Back up, restore, verify and fail over Lifeboat workloads.",
        discussion:
            "Exit codes: 0 ok, 1 failed, 2 bad input, 3 backup missed unreadable files, 4 integrity problem, 10 no repository, 11 locked, 12 unsupported format. See Docs/cli.md.",
        version: LifeboatVersion.string,
        subcommands: [
            Init.self, Backup.self, Snapshots.self, Ls.self, Diff.self, Restore.self, Check.self, Forget.self,
            Prune.self,
            Unlock.self, Digest.self, JournalList.self, ReplayCommand.self, Status.self, Failover.self,
        ])

    /// Parses, runs, and turns every failure into one line on stderr and a documented exit code.
    static func run() {
        do {
            var command = try parseAsRoot()
            try command.run()
            fflush(nil)
            Glibc.exit(0)
        } catch let error as LifeboatError {
            fflush(nil)
            Output.error(error.description)
            Glibc.exit(error.kind.exitCode)
        } catch {
            fflush(nil)
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success {
                print(message)
                Glibc.exit(0)
            }
            var line = message.split(separator: "\n").first.map(String.init) ?? message
            if line.hasPrefix("Error: ") { line.removeFirst("Error: ".count) }
            Output.error("\(line); see `lifeboat help`")
            Glibc.exit(FailureKind.badInput.exitCode)
        }
    }
}

/// `--repo DIR`, or `LIFEBOAT_REPOSITORY`.
struct RepositoryOptions: ParsableArguments {
    @Option(name: .long, help: "Repository directory (default: $LIFEBOAT_REPOSITORY).")
    var repo: String?

    var path: String {
        get throws {
            if let repo, !repo.isEmpty { return repo }
            if let env = ProcessInfo.processInfo.environment["LIFEBOAT_REPOSITORY"], !env.isEmpty { return env }
            throw LifeboatError(
                .noRepository, "no repository given", hint: "pass --repo DIR or set LIFEBOAT_REPOSITORY")
        }
    }

    func open() throws -> Repository { try Repository.open(at: try path) }
}

/// Writing to stdout and stderr, and the progress line.
enum Output {
    static func error(_ message: String) {
        FileHandle.standardError.write(Data("lifeboat: error: \(message)\n".utf8))
    }

    static func warning(_ message: String) {
        Progress.clearLine()
        FileHandle.standardError.write(Data("lifeboat: warning: \(message)\n".utf8))
    }

    static func info(_ message: String) {
        FileHandle.standardError.write(Data("\(message)\n".utf8))
    }

    /// Prints `value` as pretty, key-sorted JSON on stdout.
    static func json<Value: Encodable>(_ value: Value) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        print(String(decoding: try encoder.encode(value), as: UTF8.self))
    }

    static func rate(_ bytes: UInt64, _ seconds: Double) -> String {
        "\(ByteSize.format(UInt64(Double(bytes) / max(seconds, 0.001))))/s"
    }
}
