import Foundation
import LifeboatAPI
import LifeboatCluster
import LifeboatCore
import LifeboatJournal
import LifeboatRepository
import Logging
import Synchronization

/// A peer's warm copy of a workload (`standby: warm`): its backing dir holds the newest
/// snapshot with every record of its journal after it applied, kept up as the stream brings
/// more, so a failover on this host loads nothing from the volume and replays only the last
/// records.
///
/// Rounds run beside the control loop while the host is a peer: the first restores the newest
/// snapshot on the lease's history into the (emptied) backing dir, every later one replays the
/// records that became durable since. The position the backing dir holds exactly lives in
/// memory only: the applied files sit in this kernel's page cache, so after a restart of the
/// agent (or of the host) the copy counts as cold and is warmed again. While a round writes,
/// the position is unknown; a round that fails leaves the copy cold, never half-counted.
///
/// A recovery on this host `takeOver`s the backing dir: it waits for a round in flight and
/// stops the rounds; the copy serves as the recovery's base only when its position is on the
/// new lease's history and the journal still holds every record after it. Seed data (files no
/// snapshot and no journal covers) is never touched.
final class WarmStandby: Sendable {
    let configuration: WorkloadConfiguration
    let repositoryPath: String
    let writer: JournalWriter
    let clock: any AgentClock
    let logger: Logger

    private struct State {
        /// The journal position the backing dir holds exactly; nil: cold (or a round writes).
        var position: Position?
        /// The snapshot the copy was warmed from.
        var snapshot: String?
        /// The journal's `resets` when the copy was warmed: a journal started over since (it
        /// rejoined a new primary) may hold other records at the same seqs, so the copy is cold.
        var generation: UInt64 = 0
        /// Set while a recovery owns the backing dir: no rounds.
        var suspended = false
        /// A round is restoring the snapshot.
        var warming = false
        /// Why the copy is cold (the last round's problem), for status.
        var problem: String?
        var appliedRecords: UInt64 = 0
        var warmUps = 0
        /// No warm-up before this (monotonic seconds): after one that could not start, the
        /// next waits `warmUpRetry`, so a cold copy does not list the repository every round.
        var nextWarmUp = 0.0
    }

    /// How long a cold copy waits after a warm-up that could not start (no snapshot yet, a
    /// journal that does not reach it, an unreachable volume).
    static let warmUpRetry = 5.0
    private let state = Mutex(State())
    /// Held while a round or a takeover works on the backing dir.
    private let work = NSLock()

    init(
        configuration: WorkloadConfiguration, repositoryPath: String, writer: JournalWriter, clock: any AgentClock,
        logger: Logger
    ) {
        self.configuration = configuration
        self.repositoryPath = repositoryPath
        self.writer = writer
        self.clock = clock
        self.logger = logger
    }

    var name: String { configuration.name }

    /// The position the warm copy holds (nil: cold).
    var position: Position? { state.withLock { $0.position } }

    /// What status shows of the copy.
    var status: StandbyStatus {
        state.withLock { state in
            let phase: String
            if state.suspended {
                phase = "off"
            } else if state.warming {
                phase = "warming"
            } else {
                phase = state.position == nil ? "cold" : "warm"
            }
            return StandbyStatus(
                mode: WorkloadConfiguration.Standby.warm.rawValue, state: phase,
                position: state.position.map { "\($0)" }, snapshot: state.snapshot,
                appliedRecords: state.appliedRecords, warmUps: state.warmUps, problem: state.problem)
        }
    }

    /// One round (blocking): warms a cold copy from the newest snapshot, else applies the
    /// records that became durable since the last round. `history`: the lease's, as last read
    /// (nil: no lease yet, nothing to copy).
    func round(history: [EpochStart]?) {
        work.lock()
        defer { work.unlock() }
        guard let history, !state.withLock({ $0.suspended }) else { return }
        do {
            if state.withLock({ $0.position }) == nil {
                guard clock.monotonic >= state.withLock({ $0.nextWarmUp }) else { return }
                do {
                    try warmUp(history: history)
                } catch {
                    state.withLock { $0.nextWarmUp = clock.monotonic + WarmStandby.warmUpRetry }
                    throw error
                }
            }
            try catchUp(history: history)
            state.withLock { $0.problem = nil }
        } catch {
            let text = "\(error)"
            let changed = state.withLock { state -> Bool in
                state.position = nil
                state.warming = false
                defer { state.problem = text }
                return state.problem != text
            }
            guard changed else { return }
            if error is NotYet {
                logger.info("the warm copy of the backing dir waits: \(text)")
            } else {
                logger.warning("the warm copy of the backing dir is cold: \(text); warming it again")
            }
        }
    }

    /// A recovery takes the backing dir over: waits for a round in flight, stops the rounds,
    /// and returns the position the backing dir holds exactly when the recovery may start
    /// from it (on `history`, and the journal holds every record after it); nil: restore as
    /// on a cold host.
    func takeOver(history: [EpochStart]) -> Position? {
        work.lock()
        defer { work.unlock() }
        let (warm, generation) = state.withLock { state -> (Position?, UInt64) in
            state.suspended = true
            defer { state.position = nil }
            return (state.position, state.generation)
        }
        guard let warm, history.contains(journalEnd: warm), generation == writer.resets else { return nil }
        if let durable = writer.durablePosition, durable.seq > warm.seq, writer.firstSeq > warm.seq + 1 { return nil }
        return warm
    }

    /// This host is a peer again (it was demoted, or its recovery failed): the backing dir is
    /// not a copy of anything known now; the next round warms it again.
    func resume() {
        work.lock()
        defer { work.unlock() }
        state.withLock { state in
            state.suspended = false
            state.position = nil
            state.nextWarmUp = 0
        }
    }

    /// Restores the newest snapshot on `history` into the emptied backing dir, when the journal
    /// continues it. Throws (the copy stays cold) when there is nothing to warm from yet.
    private func warmUp(history: [EpochStart]) throws {
        // Read first: a reset after this (the journal rejoined a primary) fails the catch-up.
        let generation = writer.resets
        let backing = try BackingDir.state(of: configuration)
        if backing == .seeded {
            throw LifeboatError(
                .operationFailed,
                "the backing dir \(configuration.backingDir) holds seed data that no snapshot covers; it is left as it is"
            )
        }
        let repository = try Repository.open(at: repositoryPath)
        guard let newest = try repository.newestSnapshot(of: name, on: history), let base = newest.snapshot.position
        else { throw NotYet("no snapshot of \(name) on the lease's history in the repository yet") }
        let durable = writer.durablePosition ?? Position(epoch: 0, seq: 0)
        guard durable.seq >= base.seq else {
            throw NotYet("the journal (at \(durable)) is behind the newest snapshot (at \(base)) yet")
        }
        if durable.seq > base.seq, writer.firstSeq > base.seq + 1 {
            throw LifeboatError(
                .operationFailed,
                "the journal starts at seq \(writer.firstSeq), after the newest snapshot's \(base)")
        }
        let started = clock.monotonic
        state.withLock { $0.warming = true }
        defer { state.withLock { $0.warming = false } }
        // Covered from here on (the snapshot and the journal): never read as seed data.
        try BackingDir.markCaptured(configuration)
        try BackingDir.clear(configuration.backingDir)
        let restored = try repository.restoreWhole(newest, into: configuration.backingDir)
        state.withLock { state in
            state.position = base
            state.snapshot = newest.id.hex
            state.generation = generation
            state.warmUps += 1
        }
        logger.info(
            "warm copy: restored snapshot \(newest.id.short) at \(base) (\(restored.bytes) bytes) in \(String(format: "%.2f", clock.monotonic - started)) s"
        )
    }

    /// Nothing to warm from yet (no snapshot, or the journal has not reached it): not a fault.
    struct NotYet: Error, CustomStringConvertible {
        let description: String
        init(_ description: String) { self.description = description }
    }

    /// Replays the records after the copy's position through the journal's durable end.
    private func catchUp(history: [EpochStart]) throws {
        guard let (from, generation) = state.withLock({ state in state.position.map { ($0, state.generation) } })
        else { return }
        guard history.contains(journalEnd: from) else {
            throw LifeboatError(.operationFailed, "the copy at \(from) is not on the lease's history any more")
        }
        guard generation == writer.resets else {
            throw LifeboatError(
                .operationFailed, "the journal was started over since the copy was warmed (it rejoined a primary)")
        }
        guard let durable = writer.durablePosition, durable.seq > from.seq else { return }
        // The journal is rejoining a new primary (it still holds records the history lacks):
        // wait for the stream to set it right.
        guard history.contains(journalEnd: durable) else { return }
        state.withLock { $0.position = nil }
        let result = try JournalReplay.replay(
            journal: configuration.journalDir, onto: configuration.backingDir, from: from.seq + 1,
            until: durable.seq, requireFirst: true)
        guard generation == writer.resets else {
            throw LifeboatError(.operationFailed, "the journal was started over while the copy replayed it")
        }
        guard let last = result.last, last.seq == durable.seq else {
            throw LifeboatError(
                .operationFailed,
                "the journal ended at \(result.last.map { "\($0)" } ?? "\(from)") while it said \(durable) is durable")
        }
        state.withLock { state in
            state.position = last
            state.appliedRecords += UInt64(result.records)
        }
    }
}
