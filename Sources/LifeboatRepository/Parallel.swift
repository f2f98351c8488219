import Dispatch
import Foundation
import Synchronization

/// Runs `body(i)` for `0..<count` on all cores and waits; the first error thrown is rethrown.
///
/// The calling thread works too; helper threads take indexes from the same counter, so a
/// slow iteration never leaves a core idle while others wait. Callers hand each iteration
/// its own slot of shared output (see `SlotArray`), so no two iterations write the same memory.
func parallelFor(_ count: Int, _ body: @escaping @Sendable (Int) throws -> Void) throws {
    if count == 0 { return }
    if count == 1 {
        try body(0)
        return
    }
    let errors = SlotArray<(any Error)?>(count: count, initial: nil)
    let next = SharedCounter()
    let work: @Sendable () -> Void = {
        while true {
            let index = next.takeNext()
            if index >= count { return }
            do { try body(index) } catch { errors[index] = error }
        }
    }
    let helpers = min(count, ProcessInfo.processInfo.activeProcessorCount) - 1
    let done = DispatchSemaphore(value: 0)
    for _ in 0..<helpers {
        Thread {
            work()
            done.signal()
        }.start()
    }
    work()
    for _ in 0..<helpers { done.wait() }
    for index in 0..<count {
        if let error = errors[index] { throw error }
    }
}

/// A counter handed out to worker threads, one number each.
final class SharedCounter: Sendable {
    private let value = Atomic<Int>(0)

    func takeNext() -> Int { value.add(1, ordering: .relaxed).oldValue }
}

/// A fixed-size array whose slots are written by different threads, one slot each.
///
/// Safe because every writer owns a distinct index and readers wait for all writers
/// (`parallelFor` returns only when every iteration is done).
final class SlotArray<Element>: @unchecked Sendable {
    private let storage: UnsafeMutableBufferPointer<Element>

    init(count: Int, initial: Element) {
        storage = .allocate(capacity: count)
        storage.initialize(repeating: initial)
    }

    deinit {
        storage.deinitialize()
        storage.deallocate()
    }

    var count: Int { storage.count }

    subscript(index: Int) -> Element {
        get { storage[index] }
        set { storage[index] = newValue }
    }
}
