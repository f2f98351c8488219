import CLifeboatPosix

/// CRC-32C (Castagnoli), the checksum of journal records: cheap per record (the CPU's crc32
/// instruction where there is one), and it catches every burst error up to 32 bits, which is
/// what a torn or flipped write looks like.
public enum CRC32C {
    /// Continues `crc` (start with 0) over `buffer`.
    public static func update(_ crc: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return crc }
        return lifeboat_crc32c(crc, base, buffer.count)
    }

    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { update(0, $0) }
    }
}
