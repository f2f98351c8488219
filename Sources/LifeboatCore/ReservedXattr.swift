/// Extended attributes that are Lifeboat's own bookkeeping on captured files: hidden from the
/// service by the capture layer and left out of tree digests. Snapshots keep them, so a
/// restored tree still knows its file ids.
public enum ReservedXattr {
    public static let prefix = "trusted.lifeboat."
    /// A file's id (8 bytes, little-endian).
    public static let fileID = "trusted.lifeboat.fid"

    public static func isReserved(_ name: [UInt8]) -> Bool {
        name.starts(with: prefix.utf8)
    }
}
