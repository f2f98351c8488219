import Foundation
import Glibc
import LifeboatCore
import LifeboatRepository
import Synchronization

/// A one-line progress display on stderr, redrawn four times a second — only when stderr is
/// a terminal, so logs and pipes never see it.
final class Progress: Sendable {
    private let counters: TransferProgress
    private let verb: String
    private let total: UInt64?
    private let stopped = Atomic<Bool>(false)
    private let done = Mutex<Bool>(false)

    static var enabled: Bool { isatty(2) == 1 }

    init(_ counters: TransferProgress, verb: String, total: UInt64? = nil) {
        self.counters = counters
        self.verb = verb
        self.total = total
        guard Progress.enabled else { return }
        let thread = Thread { [self] in
            while !stopped.load(ordering: .relaxed) {
                draw()
                Thread.sleep(forTimeInterval: 0.25)
            }
            done.withLock { $0 = true }
        }
        thread.start()
    }

    private func draw() {
        let elapsed = TransferProgress.monotonicNow() - counters.started
        let bytes = counters.bytes.load(ordering: .relaxed)
        var line =
            "[\(Int(elapsed) / 60):\(String(format: "%02d", Int(elapsed) % 60))] \(verb) \(counters.files.load(ordering: .relaxed)) files, \(ByteSize.format(bytes))"
        if let total, total > 0 {
            line += " of \(ByteSize.format(total)) (\(min(100, bytes * 100 / total))%)"
        }
        line += ", \(Output.rate(bytes, elapsed))"
        let new = counters.newBytes.load(ordering: .relaxed)
        if new > 0 { line += ", \(ByteSize.format(new)) new" }
        FileHandle.standardError.write(Data("\r\u{1B}[K\(line)".utf8))
    }

    /// Stops redrawing and clears the line.
    func finish() {
        guard Progress.enabled, !stopped.exchange(true, ordering: .relaxed) else { return }
        while !done.withLock({ $0 }) { usleep(10_000) }
        Progress.clearLine()
    }

    static func clearLine() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
