import Foundation
import LifeboatCluster
import Synchronization

/// Collects what a watch (or any stream) yields, for a test to wait on.
final class WatchRecorder<Update: Sendable>: Sendable {
    private final class Storage: Sendable {
        let updates = Mutex<[Update]>([])
        let ended = Atomic<Bool>(false)
    }
    private let storage = Storage()
    private let consumed = Mutex(0)
    private let task: Task<Void, Never>

    init<Stream: AsyncSequence & Sendable>(_ stream: Stream) where Stream.Element == Update {
        let storage = self.storage
        task = Task {
            do {
                for try await update in stream { storage.updates.withLock { $0.append(update) } }
            } catch {}
            storage.ended.store(true, ordering: .sequentiallyConsistent)
        }
    }

    /// Every update so far.
    var all: [Update] { storage.updates.withLock { $0 } }

    /// Stops consuming (the watch ends).
    func stop() { task.cancel() }

    /// Waits until the stream ended.
    func waitForEnd(within seconds: Double) async throws {
        let deadline = Date().addingTimeInterval(seconds)
        while !storage.ended.load(ordering: .sequentiallyConsistent) {
            guard Date() < deadline else { throw LifeboatTestError("the stream did not end within \(seconds) s") }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
    }

    /// The first update after those already taken that satisfies `match` (the ones before it
    /// are taken too), within `seconds`.
    func take(within seconds: Double, where match: (Update) -> Bool) async throws -> Update {
        let deadline = Date().addingTimeInterval(seconds)
        while true {
            let found = consumed.withLock { consumed -> Update? in
                let updates = all
                while consumed < updates.count {
                    consumed += 1
                    if match(updates[consumed - 1]) { return updates[consumed - 1] }
                }
                return nil
            }
            if let found { return found }
            guard Date() < deadline else { throw LifeboatTestError("nothing arrived within \(seconds) s: \(all)") }
            try await Task.sleep(nanoseconds: 20_000_000)
        }
    }
}

extension WatchRecorder where Update == EtcdWatchUpdate {
    /// The next `count` events (within 10 s).
    func next(_ count: Int) async throws -> [EtcdEvent] {
        var events: [EtcdEvent] = []
        while events.count < count {
            let update = try await take(within: 10) { _ in true }
            guard case .events(let batch) = update else { throw LifeboatTestError("unexpected \(update)") }
            events += batch
        }
        return events
    }
}
