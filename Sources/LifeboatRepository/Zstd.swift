import CZstd
import LifeboatCore
import Synchronization

/// zstd compression with reusable contexts, safe to call from many threads at once.
///
/// Contexts are kept in a small pool: a caller takes one, uses it, and gives it back,
/// so no context is shared between threads and none is allocated per chunk.
public final class Zstd: Sendable {
    public let level: Int32
    private let compressors = Mutex<[ContextBox]>([])
    private let decompressors = Mutex<[ContextBox]>([])

    public init(level: Int32) {
        self.level = level
    }

    deinit {
        compressors.withLock { boxes in
            for box in boxes { ZSTD_freeCCtx(box.pointer) }
        }
        decompressors.withLock { boxes in
            for box in boxes { ZSTD_freeDCtx(box.pointer) }
        }
    }

    /// Compresses `source`; returns nil when the result would not be smaller (store it raw then).
    public func compress(_ source: UnsafeRawBufferPointer) -> [UInt8]? {
        guard source.count > 64 else { return nil }
        let context = compressors.withLock { $0.popLast() } ?? ContextBox(pointer: ZSTD_createCCtx())
        defer { compressors.withLock { $0.append(context) } }
        let bound = ZSTD_compressBound(source.count)
        let output = [UInt8](unsafeUninitializedCapacity: bound) { buffer, initialized in
            let written = ZSTD_compressCCtx(
                context.pointer, buffer.baseAddress, bound, source.baseAddress, source.count, level)
            initialized = ZSTD_isError(written) != 0 ? 0 : written
        }
        // Keep compression only where it saves at least 1/32 of the bytes.
        guard !output.isEmpty, output.count < source.count - source.count / 32 else { return nil }
        return output
    }

    /// Decompresses a frame whose plaintext is exactly `rawLength` bytes into `destination`.
    /// Throws when the frame is damaged or its size differs.
    public func decompress(_ source: UnsafeRawBufferPointer, into destination: UnsafeMutableRawBufferPointer) throws {
        let context = decompressors.withLock { $0.popLast() } ?? ContextBox(pointer: ZSTD_createDCtx())
        defer { decompressors.withLock { $0.append(context) } }
        let written = ZSTD_decompressDCtx(
            context.pointer, destination.baseAddress, destination.count, source.baseAddress, source.count)
        if ZSTD_isError(written) != 0 {
            let reason = String(cString: ZSTD_getErrorName(written))
            throw LifeboatError(.integrity, "zstd frame is damaged (\(reason))")
        }
        guard written == destination.count else {
            throw LifeboatError(.integrity, "zstd frame holds \(written) bytes, expected \(destination.count)")
        }
    }
}

/// Owns one zstd context pointer; only ever used by the thread that took it from the pool.
private struct ContextBox: @unchecked Sendable {
    let pointer: OpaquePointer?
}
