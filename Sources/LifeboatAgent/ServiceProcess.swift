import CLifeboatPosix
import Foundation
import Glibc
import LifeboatCore
import Synchronization

/// The workload's service on the primary: started with the config's `start` command in a
/// process group of its own, probed with `health`, stopped with `stop` (or SIGTERM, then
/// SIGKILL). Its output is appended to `service.log` in the journal dir.
final class ServiceProcess: Sendable {
    let configuration: ServiceConfiguration
    let logPath: String
    let name: String
    private let child = Mutex<pid_t?>(nil)
    private let exitStatus = Mutex<Int32?>(nil)

    init(_ configuration: ServiceConfiguration, name: String, logPath: String) {
        self.configuration = configuration
        self.name = name
        self.logPath = logPath
    }

    var pid: pid_t? { child.withLock { $0 } }

    /// Starts the service.
    func start() throws {
        let pid = lifeboat_spawn_shell(ServiceProcess.execForm(configuration.start), logPath)
        guard pid > 0 else {
            throw LifeboatError(
                .operationFailed, "cannot start the service of \(name): \(String(cString: strerror(errno)))")
        }
        child.withLock { $0 = pid }
        exitStatus.withLock { $0 = nil }
    }

    /// A simple command runs as `exec COMMAND`, so the shell is replaced and the pid the agent
    /// reports (and signals) is the service's own; a command with shell syntax keeps its shell.
    static func execForm(_ command: String) -> String {
        let special = CharacterSet(charactersIn: ";&|\n()`$<>")
        if command.unicodeScalars.contains(where: { special.contains($0) }) { return command }
        if command.trimmingCharacters(in: .whitespaces).hasPrefix("exec ") { return command }
        return "exec " + command
    }

    /// True while the started process runs (reaps it when it ended).
    var isRunning: Bool {
        child.withLock { pid in
            guard let current = pid else { return false }
            var status: Int32 = 0
            let result = waitpid(current, &status, WNOHANG)
            if result == current || (result < 0 && errno == ECHILD) {
                exitStatus.withLock { $0 = status }
                pid = nil
                return false
            }
            return true
        }
    }

    /// Waits until the health command exits 0 (or, without one, one second of running).
    func waitHealthy(timeout: Double) throws {
        let deadline = Date(timeIntervalSinceNow: timeout)
        guard let health = configuration.health else {
            Thread.sleep(forTimeInterval: 1)
            guard isRunning else { throw exited() }
            return
        }
        while Date() < deadline {
            guard isRunning else { throw exited() }
            if (try? ServiceProcess.run(health, logPath: logPath, timeout: 5)) == 0 { return }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw LifeboatError(
            .operationFailed, "the service of \(name) did not pass its health command within \(Int(timeout)) s",
            hint: "see \(logPath)")
    }

    private func exited() -> LifeboatError {
        LifeboatError(
            .operationFailed,
            "the service of \(name) exited (status \(exitStatus.withLock { $0 }.map { String($0) } ?? "?"))",
            hint: "see \(logPath)")
    }

    /// Stops the service: the stop command, else SIGTERM to its group; SIGKILL after `timeout`.
    func stop(timeout: Double = 10) {
        guard let pid = child.withLock({ $0 }) else { return }
        if let stop = configuration.stop {
            _ = try? ServiceProcess.run(stop, logPath: logPath, timeout: timeout)
        } else {
            Glibc.kill(-pid, SIGTERM)
        }
        let deadline = Date(timeIntervalSinceNow: timeout)
        while isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if isRunning {
            Glibc.kill(-pid, SIGKILL)
            while isRunning { Thread.sleep(forTimeInterval: 0.02) }
        }
    }

    /// Kills the service's process group at once (the lease is lost).
    func kill() {
        guard let pid = child.withLock({ $0 }) else { return }
        Glibc.kill(-pid, SIGKILL)
        while isRunning { Thread.sleep(forTimeInterval: 0.01) }
    }

    /// Runs a command to its end; its exit status, or throws after `timeout` (it is killed).
    static func run(_ command: String, logPath: String, timeout: Double) throws -> Int32 {
        let pid = lifeboat_spawn_shell(command, logPath)
        guard pid > 0 else { throw LifeboatError(.operationFailed, "cannot run `\(command)`") }
        let deadline = Date(timeIntervalSinceNow: timeout)
        var status: Int32 = 0
        while true {
            let result = waitpid(pid, &status, WNOHANG)
            if result == pid { break }
            if result < 0 && errno != EINTR { throw LifeboatError(.operationFailed, "cannot wait for `\(command)`") }
            if Date() >= deadline {
                Glibc.kill(-pid, SIGKILL)
                waitpid(pid, &status, 0)
                throw LifeboatError(.operationFailed, "`\(command)` did not finish within \(Int(timeout)) s")
            }
            Thread.sleep(forTimeInterval: 0.01)
        }
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
