import CLifeboatPosix
import Glibc
import LifeboatCore
import LifeboatJournal
import LifeboatRepository
import Logging

/// Makes a workload's backing dir agree with its journal after the agent stopped uncleanly,
/// before the workload is mounted again.
///
/// While the agent serves a workload, `JDIR/running` exists; a clean stop removes it. When it is
/// there at start, the backing dir may hold changes the journal never recorded (answered
/// without fsync and in the page cache when the agent died) or lack journaled ones (the host
/// went down). So the backing dir is rebuilt in a fresh sibling dir: the newest snapshot of the
/// workload that the journal continues (or an empty dir, when capture began on an empty
/// backing dir and the journal still starts at seq 1), plus the journal replayed after it. The
/// rebuilt dir is flushed and swapped in (RENAME_EXCHANGE); the old one is kept as
/// `<backing>.unclean-<UTC time>`: the agent deletes nothing that no snapshot or journal
/// covers. When nothing covers the backing dir (it was seeded before capture and no snapshot
/// fits), the start is refused with the way out.
///
/// On a clean start it only records, once, what the backing dir held when capture began
/// (`JDIR/capture-base`).
enum UncleanStart {
    /// Records whether the backing dir was empty when capture began (with its root's metadata).
    static let baseFile = "capture-base"

    /// What `capture-base` says: the backing dir was empty at the first mount (with the root's
    /// mode, owner and mtime), or it held files.
    struct Base: Equatable {
        var empty: Bool
        var mode: UInt32
        var uid: UInt32
        var gid: UInt32
        var mtime: Timestamp

        var text: String {
            "\(empty ? "empty" : "seeded") mode=\(String(mode, radix: 8)) uid=\(uid) gid=\(gid) mtime=\(mtime.seconds).\(mtime.nanoseconds)\n"
        }

        init(empty: Bool, mode: UInt32, uid: UInt32, gid: UInt32, mtime: Timestamp) {
            self.empty = empty
            self.mode = mode
            self.uid = uid
            self.gid = gid
            self.mtime = mtime
        }

        init?(parsing text: String) {
            let words = text.split(whereSeparator: \.isWhitespace)
            guard let kind = words.first, kind == "empty" || kind == "seeded" else { return nil }
            var fields: [Substring: Substring] = [:]
            for word in words.dropFirst() {
                let parts = word.split(separator: "=", maxSplits: 1)
                if parts.count == 2 { fields[parts[0]] = parts[1] }
            }
            let time = fields["mtime"]?.split(separator: ".")
            guard let mode = fields["mode"].flatMap({ UInt32($0, radix: 8) }),
                let uid = fields["uid"].flatMap({ UInt32($0) }),
                let gid = fields["gid"].flatMap({ UInt32($0) }), let time, time.count == 2,
                let seconds = Int64(time[0]), let nanoseconds = Int32(time[1])
            else { return nil }
            self.init(
                empty: kind == "empty", mode: mode, uid: uid, gid: gid,
                mtime: Timestamp(seconds: seconds, nanoseconds: nanoseconds))
        }
    }

    /// Runs before the workload is mounted: on a clean start records `capture-base` (first
    /// mount only); after an unclean stop rebuilds the backing dir as described above, or throws
    /// when nothing covers it. `repository` is where the workload's snapshots are (nil: none).
    static func prepare(
        _ workload: WorkloadConfiguration, writer: JournalWriter, repository: String?, host: String?,
        logger: Logger
    ) throws {
        let marker = workload.journalDir + "/running"
        if access(marker, F_OK) != 0 {
            let code = errno
            guard code == ENOENT else {
                throw LifeboatError(
                    .operationFailed,
                    "workload \(workload.name): cannot tell whether the agent stopped cleanly: \(marker): \(String(cString: strerror(code)))",
                    hint: "make the journal dir readable by the agent")
            }
            if writer.lastPosition == nil, try readBase(workload) == nil { try recordBase(workload) }
            return
        }
        let base = try readBase(workload)
        let end = writer.lastPosition
        if end == nil, base == nil, try isEmpty(workload.backingDir) {
            // Killed before anything was written or recorded: both are empty, so they agree.
            try recordBase(workload)
            Checkpoints.markStopped(workload)
            return
        }
        try rebuild(workload, writer: writer, base: base, repository: repository, host: host, logger: logger)
    }

    // MARK: - capture-base

    static func readBase(_ workload: WorkloadConfiguration) throws -> Base? {
        let path = workload.journalDir + "/" + baseFile
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 && errno == ENOENT { return nil }
        guard fd >= 0 else {
            throw LifeboatError(
                .operationFailed, "workload \(workload.name): cannot read \(path): \(String(cString: strerror(errno)))",
                hint: "make the journal dir readable by the agent")
        }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: 512)
        var count = 0
        while count < bytes.count {
            let got = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + count, $0.count - count) }
            if got < 0 && errno == EINTR { continue }
            guard got >= 0 else {
                throw LifeboatError(
                    .operationFailed,
                    "workload \(workload.name): cannot read \(path): \(String(cString: strerror(errno)))")
            }
            if got == 0 { break }
            count += got
        }
        let text = String(decoding: bytes[..<count], as: UTF8.self)
        guard let base = Base(parsing: text) else {
            throw LifeboatError(
                .integrity, "workload \(workload.name): \(path) is damaged: \(text.prefix(80))",
                hint: "it records whether the backing dir was empty when capture began; remove it only if you know")
        }
        return base
    }

    /// Notes what the backing dir holds now, at the first mount (written atomically, with a
    /// directory fsync).
    static func recordBase(_ workload: WorkloadConfiguration) throws {
        var st = lifeboat_stat_basics()
        guard lifeboat_fstatat_basics(AT_FDCWD, workload.backingDir, 0, &st) == 0 else {
            throw LifeboatError(
                .operationFailed,
                "workload \(workload.name): cannot stat \(workload.backingDir): \(String(cString: strerror(errno)))")
        }
        let base = Base(
            empty: try isEmpty(workload.backingDir), mode: st.mode & 0o7777, uid: st.uid, gid: st.gid,
            mtime: Timestamp(seconds: st.mtime_seconds, nanoseconds: Int32(st.mtime_nanoseconds)))
        try Checkpoints.writeAtomically(workload.journalDir, baseFile, base.text)
    }

    /// Whether `directory` has no entries (a failed listing throws: it is not taken as empty).
    private static func isEmpty(_ directory: String) throws -> Bool {
        guard let stream = opendir(directory) else {
            throw LifeboatError(
                .operationFailed, "cannot list \(directory): \(String(cString: strerror(errno)))",
                hint: "check the directory's permissions and the disk")
        }
        defer { closedir(stream) }
        while true {
            errno = 0
            guard let entry = readdir(stream) else {
                if errno != 0 {
                    throw LifeboatError(
                        .operationFailed, "cannot list \(directory): \(String(cString: strerror(errno)))")
                }
                return true
            }
            let name = withUnsafeBytes(of: &entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
            if name != [46] && name != [46, 46] { return false }
        }
    }

    // MARK: - rebuilding

    /// The newest snapshot of the workload whose position the journal reaches and continues.
    private static func coveringSnapshot(
        _ workload: WorkloadConfiguration, writer: JournalWriter, repository: String?, host: String?
    ) throws -> SnapshotRecord? {
        guard let repository, access(repository, F_OK) == 0 else { return nil }
        let end = writer.lastPosition
        let firstSeq = writer.firstSeq
        // An agent's snapshot (epoch > 0) without a position was cut at an empty journal.
        let candidates = try Repository.open(at: repository).listSnapshots().filter {
            $0.snapshot.workload == workload.name && ($0.snapshot.position != nil || $0.snapshot.epoch > 0)
                && (host == nil || $0.snapshot.host == host)
        }
        for record in candidates.reversed() {
            guard let position = record.snapshot.position else {
                if firstSeq == 1 { return record }
                continue
            }
            guard let end, position.seq <= end.seq, firstSeq <= position.seq + 1 else { continue }
            // The journal's record at that seq must be the one the snapshot was cut after.
            if position.seq >= firstSeq {
                var found: Position?
                try JournalReader.read(directory: workload.journalDir, from: position.seq) { record in
                    found = record.position
                    return false
                }
                if found != position { continue }
            }
            return record
        }
        return nil
    }

    private static func rebuild(
        _ workload: WorkloadConfiguration, writer: JournalWriter, base: Base?, repository: String?, host: String?,
        logger: Logger
    ) throws {
        let name = workload.name
        let backing = workload.backingDir
        let end = writer.lastPosition
        let snapshot = try coveringSnapshot(workload, writer: writer, repository: repository, host: host)
        let fromEmpty = snapshot == nil && base?.empty == true && writer.firstSeq == 1
        guard snapshot != nil || fromEmpty else {
            let journal = end.map { "seqs \(writer.firstSeq) to \($0.seq)" } ?? "no records"
            let why =
                base == nil
                ? "it is not recorded whether the backing dir was empty when capture began"
                : (base!.empty
                    ? "the journal no longer starts at seq 1" : "the backing dir held files when capture began")
            throw LifeboatError(
                .operationFailed,
                "workload \(name): the agent stopped uncleanly (\(workload.journalDir)/running is there) and nothing can rebuild \(backing) to match the journal: no snapshot of \(name) in \(repository ?? "the repository") is continued by the journal (\(journal)), and \(why)",
                hint:
                    "to serve \(backing) as it is, remove \(workload.journalDir)/running and take a snapshot right after the start (`lifeboat backup --agent URL --workload \(name)`); writes answered without fsync before the stop may be in it but not in the journal"
            )
        }
        let parent = parentPath(backing)
        var backingStat = lifeboat_stat_basics()
        var parentStat = lifeboat_stat_basics()
        guard lifeboat_fstatat_basics(AT_FDCWD, backing, 0, &backingStat) == 0,
            lifeboat_fstatat_basics(AT_FDCWD, parent, 0, &parentStat) == 0
        else {
            throw LifeboatError(
                .operationFailed, "workload \(name): cannot stat \(backing): \(String(cString: strerror(errno)))")
        }
        let manual =
            snapshot.map {
                "`lifeboat restore --repo \(repository ?? "REPO") \($0.id.hex) --target NEW_DIR --journal \(workload.journalDir)`"
            } ?? "`lifeboat replay --journal \(workload.journalDir) --target NEW_DIR` (NEW_DIR empty)"
        guard backingStat.device == parentStat.device else {
            throw LifeboatError(
                .operationFailed,
                "workload \(name): the agent stopped uncleanly and \(backing) must be rebuilt from the journal, but it is a mount point: a rebuilt dir cannot be swapped in beside it",
                hint:
                    "rebuild it by hand on that volume: \(manual), move the old files aside, put NEW_DIR's in their place, then remove \(workload.journalDir)/running"
            )
        }
        let stamp = utcStamp()
        let fresh = unusedName(backing + ".rebuild-" + stamp)
        let aside = unusedName(backing + ".unclean-" + stamp)
        logger.warning(
            "the agent did not stop cleanly last time; rebuilding \(backing) from \(snapshot.map { "snapshot \($0.id.short) at \($0.snapshot.position.map { "\($0)" } ?? "the journal's start")" } ?? "an empty dir") and the journal through \(end.map { "\($0)" } ?? "its start") in \(fresh)"
        )
        var replayed = 0
        do {
            if let snapshot {
                _ = try Repository.open(at: repository!).restoreWhole(snapshot, into: fresh)
            } else {
                try makeEmptyRoot(fresh, base!)
            }
            replayed = try replay(workload.journalDir, into: fresh, after: snapshot?.snapshot.position?.seq ?? 0)
            try flush(fresh)
        } catch {
            // Only what the snapshot and the journal hold is in there: nothing is lost.
            removeTree(fresh)
            throw LifeboatError(
                .operationFailed, "workload \(name): rebuilding \(backing) after an unclean stop failed: \(error)",
                hint: "fix the cause and start again; \(backing) is unchanged (or rebuild by hand: \(manual))")
        }
        guard lifeboat_renameat2(AT_FDCWD, fresh, AT_FDCWD, backing, lifeboat_rename_exchange()) == 0 else {
            let text = String(cString: strerror(errno))
            removeTree(fresh)
            throw LifeboatError(
                .operationFailed, "workload \(name): cannot swap the rebuilt dir in for \(backing): \(text)",
                hint: "\(backing) is unchanged; rebuild by hand: \(manual)")
        }
        // `fresh` now names the old backing dir.
        guard rename(fresh, aside) == 0 else {
            throw LifeboatError(
                .operationFailed,
                "workload \(name): rebuilt \(backing), but cannot rename the old dir \(fresh) to \(aside): \(String(cString: strerror(errno)))",
                hint: "the old dir holds only writes that were never acknowledged; move it away and start again")
        }
        try JournalWriter.syncDirectory(parent)
        if let end { try Checkpoints.flush(workload, through: end) }
        Checkpoints.markStopped(workload)
        logger.warning(
            "\(backing) rebuilt (\(replayed) journal records replayed); the dir it replaces is kept at \(aside): it holds only writes that were never acknowledged (no fsync returned for them); remove it when you do not need it"
        )
    }

    /// An empty root with the mode, owner and mtime the backing dir had when capture began.
    private static func makeEmptyRoot(_ path: String, _ base: Base) throws {
        guard mkdir(path, 0o700) == 0 else {
            throw LifeboatError(.operationFailed, "cannot create \(path): \(String(cString: strerror(errno)))")
        }
        guard chown(path, base.uid, base.gid) == 0, chmod(path, mode_t(base.mode)) == 0,
            lifeboat_set_mtime(path, base.mtime.seconds, Int64(base.mtime.nanoseconds)) == 0
        else {
            throw LifeboatError(
                .operationFailed, "cannot set the metadata of \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Replays every journal record after seq `after` into `target`; returns how many.
    private static func replay(_ journalDir: String, into target: String, after: UInt64) throws -> Int {
        let replayer = try Replayer(root: target)
        defer { replayer.closeFiles() }
        var first = true
        try JournalReader.read(directory: journalDir, from: after + 1) { record in
            if first {
                first = false
                guard record.position.seq == after + 1 else {
                    throw LifeboatError(
                        .integrity,
                        "the journal in \(journalDir) continues at \(record.position), not at seq \(after + 1)")
                }
            }
            try replayer.apply(record)
            return true
        }
        return replayer.applied
    }

    private static func flush(_ directory: String) throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw LifeboatError(.operationFailed, "cannot open \(directory): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        if lifeboat_syncfs(fd) != 0 {
            throw LifeboatError(.operationFailed, "flushing \(directory) failed: \(String(cString: strerror(errno)))")
        }
    }

    /// The current UTC time as 20261203T110512Z.
    private static func utcStamp() -> String {
        var now = time(nil)
        var parts = tm()
        gmtime_r(&now, &parts)
        func two(_ value: Int32) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }

    private static func parentPath(_ path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        guard let slash = trimmed.lastIndex(of: "/") else { return "." }
        return slash == trimmed.startIndex ? "/" : String(trimmed[..<slash])
    }

    /// Removes a partly rebuilt dir (it holds only what the snapshot and the journal hold), by
    /// descriptor: it may be deeper than PATH_MAX. Best effort.
    private static func removeTree(_ path: String) {
        let fd = open(parentPath(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        let name = path.split(separator: "/").last.map { Array($0.utf8) } ?? []
        if !name.isEmpty { removeEntry(fd, name) }
    }

    private static func removeEntry(_ directory: Int32, _ name: [UInt8]) {
        let cName = name.map { CChar(bitPattern: $0) } + [0]
        var st = lifeboat_stat_basics()
        guard lifeboat_fstatat_basics(directory, cName, AT_SYMLINK_NOFOLLOW, &st) == 0 else { return }
        if st.mode & UInt32(S_IFMT) == UInt32(S_IFDIR) {
            let child = openat(directory, cName, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard child >= 0, let stream = fdopendir(child) else {
                if child >= 0 { close(child) }
                return
            }
            var names: [[UInt8]] = []
            while let entry = readdir(stream) {
                let entryName = withUnsafeBytes(of: &entry.pointee.d_name) { Array($0.prefix { $0 != 0 }) }
                if entryName != [46] && entryName != [46, 46] { names.append(entryName) }
            }
            let listFD = dirfd(stream)
            for entryName in names { removeEntry(listFD, entryName) }
            closedir(stream)
            unlinkat(directory, cName, AT_REMOVEDIR)
        } else {
            unlinkat(directory, cName, 0)
        }
    }

    /// `path`, or `path-2`, `path-3`, … : the first that does not exist.
    private static func unusedName(_ path: String) -> String {
        var candidate = path
        var counter = 2
        while access(candidate, F_OK) == 0 {
            candidate = path + "-\(counter)"
            counter += 1
        }
        return candidate
    }
}
