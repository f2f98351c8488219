import CFuse3
import Glibc
import LifeboatSystem

/// Reads the kernel's mount table, and prepares a data dir to be mounted.
public enum MountTable {
    public struct Mount: Sendable {
        public var mountPoint: String
        public var fileSystemType: String
        public var source: String
    }

    /// Every mount of this process's namespace, from /proc/self/mountinfo.
    public static func mounts() -> [Mount] {
        guard let file = fopen("/proc/self/mountinfo", "r") else { return [] }
        defer { fclose(file) }
        var result: [Mount] = []
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        while getline(&line, &capacity, file) > 0 {
            let text = String(cString: line!)
            let fields = text.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 7, let dash = fields.firstIndex(of: "-"), dash + 2 < fields.count else { continue }
            result.append(
                Mount(
                    mountPoint: unescape(String(fields[4])), fileSystemType: String(fields[dash + 1]),
                    source: String(fields[dash + 2])))
        }
        free(line)
        return result
    }

    /// mountinfo writes space, tab, newline and backslash as \040, \011, \012, \134.
    static func unescape(_ field: String) -> String {
        var bytes: [UInt8] = []
        let raw = Array(field.utf8)
        var index = 0
        while index < raw.count {
            if raw[index] == UInt8(ascii: "\\"), index + 3 < raw.count,
                let value = UInt8(String(decoding: raw[(index + 1)...(index + 3)], as: UTF8.self), radix: 8)
            {
                bytes.append(value)
                index += 4
            } else {
                bytes.append(raw[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    public static func isMountPoint(_ path: String) -> Bool {
        let resolved = canonical(path)
        return mounts().contains { $0.mountPoint == resolved }
    }

    /// The absolute path with symlinks resolved, or the path as given if it cannot be resolved.
    public static func canonical(_ path: String) -> String {
        guard let resolved = realpath(path, nil) else { return path }
        defer { free(resolved) }
        return String(cString: resolved)
    }

    /// Makes sure `dataDir` can be mounted: a Lifeboat mount left by a killed agent (opening it
    /// fails with ENOTCONN or ECONNABORTED) is detached; a live mount, a missing dir or a
    /// non-dir is refused.
    public static func prepareMountPoint(_ dataDir: String) throws(CaptureError) {
        if let mount = mounts().first(where: { $0.mountPoint == canonical(dataDir) }) {
            // stat() may be answered from the kernel's attribute cache even when the agent is
            // gone; opening the directory always asks the agent.
            let fd = open(dataDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            let err = errno
            if fd >= 0 { close(fd) }
            if fd < 0 && (err == ENOTCONN || err == ECONNABORTED) {
                if umount2(dataDir, Int32(MNT_DETACH)) != 0 {
                    throw CaptureError(
                        "data dir \(dataDir) is a dead FUSE mount and cannot be detached: \(errnoText(errno)); run 'umount -l \(dataDir)'"
                    )
                }
                return try prepareMountPoint(dataDir)
            }
            throw CaptureError(
                "data dir \(dataDir) is already a mount (\(mount.fileSystemType) from \(mount.source)); unmount it or choose another data_dir"
            )
        }
        var st = stat()
        if stat(dataDir, &st) != 0 {
            throw CaptureError(
                "data dir \(dataDir) cannot be used: \(errnoText(errno)); create it as an empty directory")
        }
        guard st.st_mode & S_IFMT == S_IFDIR else {
            throw CaptureError("data dir \(dataDir) is not a directory; give an empty directory to mount on")
        }
    }
}
