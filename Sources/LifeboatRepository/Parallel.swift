import Dispatch

/// Runs `body(i)` for `0..<count` on all cores and waits; the first error thrown is rethrown.
///
/// Callers hand each iteration its own slot of shared output (see `SlotArray`), so no two
/// iterations write the same memory.
func parallelFor(_ count: Int, _ body: (Int) throws -> Void) throws {
    if count == 0 { return }
    if count == 1 {
        try body(0)
        return
    }
    let errors = SlotArray<(any Error)?>(count: count, initial: nil)
    withoutActuallyEscaping(body) { body in
        let box = UncheckedBox(body)
        DispatchQueue.concurrentPerform(iterations: count) { index in
            do { try box.value(index) } catch { errors[index] = error }
        }
    }
    for index in 0..<count {
        if let error = errors[index] { throw error }
    }
}

/// A fixed-size array whose slots are written by different threads, one slot each.
///
/// Safe because every writer owns a distinct index and readers wait for all writers
/// (`concurrentPerform` returns only when every iteration is done).
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

/// Carries a non-Sendable value into `concurrentPerform`; used only where each iteration
/// touches disjoint state (see `parallelFor`).
struct UncheckedBox<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
