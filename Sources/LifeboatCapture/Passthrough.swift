import CFuse3
import CLifeboatPosix
import Foundation
import Glibc
import LifeboatJournal
import LifeboatSystem
import Synchronization

/// The captured data dir: every FUSE request is done on the backing dir, and every change is
/// journaled before it is answered.
///
/// Threads: libfuse calls in from its worker threads. Shared state is the inode table and the
/// journal (both locked), the namespace lock (one namespace change and its record at a
/// time) and each inode's mutation lock (one data change and its record at a time).
///
/// Writes into the backing files go through `io`'s seam (`RealSystemCalls` unless a test
/// injects failures), chosen once at init.
final class Passthrough: Sendable {
    let inodes: InodeTable
    let journal: CaptureJournal
    let io: FileIO
    /// Told how long each fsync, fdatasync and directory fsync took (see `CaptureMount.init`).
    let fsyncObserver: @Sendable (Duration) -> Void
    let root: Inode
    /// Seconds the kernel may cache names and attributes: this agent is the only writer.
    let cacheTimeout: Double = 1.0
    /// One namespace change and its record at a time (and none while a snapshot lists).
    private let namespace = NSLock()
    /// Holds changes back while a snapshot takes its cut.
    let gate = MutationGate()
    /// What changed since the last snapshot.
    let dirty = DirtyMap()
    /// Which directories each file was seen in.
    let parentMap = ParentMap()

    init(
        backingDir: String, journal: CaptureJournal, calls: any SystemCalls,
        fsyncObserver: @escaping @Sendable (Duration) -> Void
    ) throws(CaptureError) {
        let fd = Glibc.open(backingDir, BackingCalls.oPath | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw CaptureError("cannot open backing dir \(backingDir): \(errnoText(errno))") }
        let (st, err) = BackingCalls.fstat(fd)
        guard err == 0 else { throw CaptureError("cannot stat backing dir \(backingDir): \(errnoText(err))") }
        root = Inode(id: FileID.root, fd: fd, device: UInt64(st.st_dev), number: UInt64(st.st_ino), kind: S_IFDIR)
        inodes = InodeTable(root: root)
        self.journal = journal
        io = FileIO(calls)
        self.fsyncObserver = fsyncObserver
    }

    // MARK: - helpers

    func inode(_ ino: fuse_ino_t) -> Inode? { inodes.inode(FileID(ino)) }

    /// The attributes the kernel sees: the backing file's, with nothing of ours in them.
    func replyAttributes(_ req: fuse_req_t, _ inode: Inode) {
        let (st, err) = BackingCalls.fstat(inode.fd)
        if err != 0 {
            fuse_reply_err(req, err)
            return
        }
        var attr = st
        fuse_reply_attr(req, &attr, cacheTimeout)
    }

    func entry(for inode: Inode, _ st: stat) -> fuse_entry_param {
        var entry = fuse_entry_param()
        entry.ino = fuse_ino_t(inode.id)
        entry.generation = 0
        entry.attr = st
        entry.attr_timeout = cacheTimeout
        entry.entry_timeout = cacheTimeout
        return entry
    }

    /// Finds (or opens and registers) the inode named `name` in `parent`, counting a lookup.
    /// A file met for the first time without a file id gets one, journaled as `assignID`.
    func lookupInode(parent: Inode, name: UnsafePointer<CChar>) -> (Inode, stat)? {
        let (st, err) = BackingCalls.lstat(at: parent.fd, name)
        guard err == 0 else { return nil }
        if let known = inodes.lookup(device: UInt64(st.st_dev), number: UInt64(st.st_ino)) {
            parentMap.add(known.id, in: parent.id)
            return (known, st)
        }
        let fd = openat(parent.fd, name, BackingCalls.oPath | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else {
            lastLookupError.store(errno, ordering: .relaxed)
            return nil
        }
        let (opened, err2) = BackingCalls.fstat(fd)
        guard err2 == 0 else {
            close(fd)
            return nil
        }
        let entryPath = BackingCalls.procPath(parent.fd, name)
        var id = BackingCalls.readFileID(path: entryPath)
        if id == nil {
            id = withNamespaceHeld {
                gate.pass { () -> FileID? in
                    if let raced = BackingCalls.readFileID(path: entryPath) { return raced }
                    let fresh = BackingCalls.newFileID()
                    guard BackingCalls.writeFileID(fresh, path: entryPath) == 0,
                        journal.append(.assignID(parent: parent.id, name: bytes(name), file: fresh)) != nil
                    else { return nil }
                    dirty.markMetadata(fresh)
                    dirty.markDirectory(parent.id)
                    return fresh
                }
            }
        }
        guard let id else {
            close(fd)
            return nil
        }
        let inode = Inode(
            id: id, fd: fd, device: UInt64(opened.st_dev), number: UInt64(opened.st_ino),
            kind: opened.st_mode & S_IFMT)
        let registered = inodes.insert(inode)
        parentMap.add(registered.id, in: parent.id)
        return (registered, opened)
    }

    /// The errno of the last failed open in `lookupInode` (it only picks a reply's error code).
    let lastLookupError = Atomic<Int32>(0)

    func bytes(_ name: UnsafePointer<CChar>) -> [UInt8] {
        Array(
            UnsafeBufferPointer(start: UnsafeRawPointer(name).assumingMemoryBound(to: UInt8.self), count: strlen(name)))
    }

    /// Runs a namespace change and its journal record under the namespace lock; answers EIO
    /// when the journal has failed.
    ///
    /// The namespace lock is taken before the gate: a snapshot holds the namespace lock while
    /// it lists directories and then freezes the gate, so a namespace change must not be
    /// inside the gate while it waits for that lock.
    func namespaceChange<T>(_ body: () -> T) -> T {
        withNamespaceHeld { gate.pass { body() } }
    }

    /// Runs `body` with namespace changes held back (data changes go on).
    func withNamespaceHeld<T>(_ body: () throws -> T) rethrows -> T {
        namespace.lock()
        defer { namespace.unlock() }
        return try body()
    }

    // MARK: - lookup and attributes

    func lookup(_ req: fuse_req_t, _ parentIno: fuse_ino_t, _ name: UnsafePointer<CChar>) {
        guard let parent = inode(parentIno) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        guard let (found, st) = lookupInode(parent: parent, name: name) else {
            let code = lastLookupError.load(ordering: .relaxed)
            let isOutOfDescriptors = code == EMFILE || code == ENFILE
            let (_, err) = BackingCalls.lstat(at: parent.fd, name)
            fuse_reply_err(req, err != 0 ? err : (isOutOfDescriptors ? ENFILE : EIO))
            return
        }
        var reply = entry(for: found, st)
        fuse_reply_entry(req, &reply)
    }

    func forget(_ ino: fuse_ino_t, _ count: UInt64) {
        if FileID(ino) != FileID.root { inodes.forget(FileID(ino), count: count) }
    }

    func getattr(_ req: fuse_req_t, _ ino: fuse_ino_t) {
        guard let node = inode(ino) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        replyAttributes(req, node)
    }

    func setattr(
        _ req: fuse_req_t, _ ino: fuse_ino_t, _ attr: UnsafeMutablePointer<stat>, _ valid: Int32,
        _ fi: UnsafeMutablePointer<fuse_file_info>?
    ) {
        guard let node = inode(ino) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        let path = BackingCalls.procPath(node.fd)
        let time = BackingCalls.now()
        var change = AttributeChange()
        let err: Int32 = gate.pass {
            node.mutation.withLock { _ in
                if valid & FUSE_SET_ATTR_MODE != 0 {
                    let mode = UInt32(attr.pointee.st_mode & 0o7777)
                    if chmod(path, mode_t(mode)) != 0 { return errno }
                    change.mode = mode
                }
                if valid & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID) != 0 {
                    let uid = valid & FUSE_SET_ATTR_UID != 0 ? attr.pointee.st_uid : uid_t.max
                    let gid = valid & FUSE_SET_ATTR_GID != 0 ? attr.pointee.st_gid : gid_t.max
                    if fchownat(node.fd, "", uid, gid, AT_SYMLINK_NOFOLLOW | BackingCalls.atEmptyPath) != 0 {
                        return errno
                    }
                    if valid & FUSE_SET_ATTR_UID != 0 { change.uid = uid }
                    if valid & FUSE_SET_ATTR_GID != 0 { change.gid = gid }
                }
                if valid & FUSE_SET_ATTR_SIZE != 0 {
                    let size = attr.pointee.st_size
                    let rc: Int32
                    if let fi, fi.pointee.fh != 0 {
                        rc = ftruncate(Int32(truncatingIfNeeded: fi.pointee.fh), size)
                    } else {
                        rc = truncate(path, size)
                    }
                    if rc != 0 { return errno }
                    change.size = UInt64(size)
                }
                if valid & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME) != 0 {
                    if valid & FUSE_SET_ATTR_ATIME != 0 {
                        change.atime =
                            valid & FUSE_SET_ATTR_ATIME_NOW != 0
                            ? time
                            : FileTime(
                                seconds: Int64(attr.pointee.st_atim.tv_sec),
                                nanoseconds: UInt32(attr.pointee.st_atim.tv_nsec))
                    }
                    if valid & FUSE_SET_ATTR_MTIME != 0 {
                        change.mtime =
                            valid & FUSE_SET_ATTR_MTIME_NOW != 0
                            ? time
                            : FileTime(
                                seconds: Int64(attr.pointee.st_mtim.tv_sec),
                                nanoseconds: UInt32(attr.pointee.st_mtim.tv_nsec))
                    }
                }
                // A size change sets mtime; make it the recorded time so a replay matches.
                let mtime = change.mtime ?? (change.size != nil ? time : nil)
                if change.atime != nil || mtime != nil {
                    let err = BackingCalls.setTimes(of: node, atime: change.atime, mtime: mtime)
                    if err != 0 { return err }
                }
                if change == AttributeChange() { return 0 }
                guard journal.append(.setattr(file: node.id, change: change, time: time)) != nil else { return EIO }
                dirty.markMetadata(node.id)
                if let size = change.size { dirty.markRange(node, size..<UInt64.max) }
                return 0
            }
        }
        if err != 0 {
            fuse_reply_err(req, err)
            return
        }
        replyAttributes(req, node)
    }

    func readlink(_ req: fuse_req_t, _ ino: fuse_ino_t) {
        guard let node = inode(ino) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let got = readlinkat(node.fd, "", &buffer, Int(PATH_MAX))
        if got < 0 {
            fuse_reply_err(req, errno)
            return
        }
        buffer[got] = 0
        fuse_reply_readlink(req, buffer)
    }

    // MARK: - creating entries

    /// Common tail of create/mkdir/mknod/symlink: the new entry gets its owner, its file id
    /// and the recorded times; its parent gets the recorded mtime; the record is appended.
    /// Runs under the namespace lock. Returns the new inode and its attributes, or an errno.
    private func finishCreation(
        _ req: fuse_req_t, parent: Inode, name: UnsafePointer<CChar>, mode: mode_t?, time: FileTime,
        record: (FileID, UInt32, UInt32) -> Mutation
    ) -> Result<(Inode, stat), CaptureErrno> {
        let ctx = fuse_req_ctx(req)!.pointee
        // Until the record is appended, a failure removes what was made: the service is told
        // the creation failed, so nothing of it may stay.
        func undo(_ code: Int32) -> Result<(Inode, stat), CaptureErrno> {
            var st = stat()
            let isDirectory = fstatat(parent.fd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_mode & S_IFMT == S_IFDIR
            unlinkat(parent.fd, name, isDirectory ? AT_REMOVEDIR : 0)
            return .failure(CaptureErrno(code))
        }
        var gid = ctx.gid
        let (parentStat, _) = BackingCalls.fstat(parent.fd)
        if parentStat.st_mode & S_ISGID != 0 { gid = parentStat.st_gid }
        if fchownat(parent.fd, name, ctx.uid, gid, AT_SYMLINK_NOFOLLOW) != 0 { return undo(errno) }
        // The entry gets exactly the mode the service asked for: the process umask (left as
        // it is) took bits off at creation, and chown dropped set-user-id and set-group-id.
        if let mode, fchmodat(parent.fd, name, mode & 0o7777, 0) != 0 { return undo(errno) }
        let entryPath = BackingCalls.procPath(parent.fd, name)
        let id = BackingCalls.newFileID()
        var err = BackingCalls.writeFileID(id, path: entryPath)
        if err == 0 { err = BackingCalls.setTimes(path: entryPath, atime: time, mtime: time) }
        if err == 0 { err = BackingCalls.setTimes(of: parent, atime: nil, mtime: time) }
        if err != 0 { return undo(err) }
        guard journal.append(record(id, ctx.uid, gid)) != nil else { return undo(EIO) }
        dirty.markCreated(id, in: parent.id)
        guard let (node, st) = lookupInode(parent: parent, name: name) else { return .failure(CaptureErrno(EIO)) }
        return .success((node, st))
    }

    /// Common body of mknod, mkdir and symlink: `make` creates the entry in the backing dir
    /// (0 or an errno); then it gets its owner, file id, times and journal record, and the
    /// kernel its entry.
    private func makeEntry(
        _ req: fuse_req_t, _ parentIno: fuse_ino_t, _ name: UnsafePointer<CChar>, mode: mode_t?,
        make: (Inode) -> Int32, record: (Inode, FileID, UInt32, UInt32, FileTime) -> Mutation
    ) {
        guard let parent = inode(parentIno) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        let time = BackingCalls.now()
        let result = namespaceChange { () -> Result<(Inode, stat), CaptureErrno> in
            let err = make(parent)
            if err != 0 { return .failure(CaptureErrno(err)) }
            return finishCreation(req, parent: parent, name: name, mode: mode, time: time) { id, uid, gid in
                record(parent, id, uid, gid, time)
            }
        }
        replyEntry(req, result)
    }

    func mknod(_ req: fuse_req_t, _ parentIno: fuse_ino_t, _ name: UnsafePointer<CChar>, _ mode: mode_t, _ rdev: dev_t)
    {
        makeEntry(req, parentIno, name, mode: mode) { parent in
            mknodat(parent.fd, name, mode, rdev) == 0 ? 0 : errno
        } record: { parent, id, uid, gid, time in
            .create(
                parent: parent.id, name: bytes(name), file: id, mode: UInt32(mode), uid: uid, gid: gid,
                rdev: UInt64(rdev), time: time)
        }
    }

    func mkdir(_ req: fuse_req_t, _ parentIno: fuse_ino_t, _ name: UnsafePointer<CChar>, _ mode: mode_t) {
        // A directory made in a set-group-id directory is set-group-id too.
        var effective = mode & 0o7777
        if let parent = inode(parentIno), BackingCalls.fstat(parent.fd).0.st_mode & S_ISGID != 0 {
            effective |= S_ISGID
        }
        makeEntry(req, parentIno, name, mode: effective) { parent in
            mkdirat(parent.fd, name, effective) == 0 ? 0 : errno
        } record: { parent, id, uid, gid, time in
            .mkdir(
                parent: parent.id, name: bytes(name), file: id, mode: UInt32(effective), uid: uid, gid: gid, time: time)
        }
    }

    func symlink(
        _ req: fuse_req_t, _ target: UnsafePointer<CChar>, _ parentIno: fuse_ino_t, _ name: UnsafePointer<CChar>
    ) {
        makeEntry(req, parentIno, name, mode: nil) { parent in
            symlinkat(target, parent.fd, name) == 0 ? 0 : errno
        } record: { parent, id, uid, gid, time in
            .symlink(
                parent: parent.id, name: bytes(name), file: id, target: bytes(target), uid: uid, gid: gid, time: time)
        }
    }

    func create(
        _ req: fuse_req_t, _ parentIno: fuse_ino_t, _ name: UnsafePointer<CChar>, _ mode: mode_t,
        _ fi: UnsafeMutablePointer<fuse_file_info>
    ) {
        guard let parent = inode(parentIno) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        let time = BackingCalls.now()
        let flags = backingOpenFlags(fi.pointee.flags)
        var fd: Int32 = -1
        let result = namespaceChange { () -> Result<(Inode, stat), CaptureErrno> in
            fd = openat(parent.fd, name, (flags | O_CREAT | O_EXCL) & ~O_TRUNC, mode & 0o7777)
            if fd < 0 {
                let err = errno
                if err == EEXIST && fi.pointee.flags & O_EXCL == 0 {
                    // The kernel raced with another creator: open what is there.
                    return .failure(CaptureErrno(EEXIST))
                }
                return .failure(CaptureErrno(err))
            }
            let made = finishCreation(req, parent: parent, name: name, mode: mode, time: time) { id, uid, gid in
                .create(
                    parent: parent.id, name: bytes(name), file: id, mode: UInt32(S_IFREG | (mode & 0o7777)), uid: uid,
                    gid: gid, rdev: 0, time: time)
            }
            if case .failure = made {
                close(fd)
                fd = -1
            }
            return made
        }
        switch result {
        case .success(let (node, st)):
            fi.pointee.fh = UInt64(fd)
            fi.pointee.keep_cache = 1
            var reply = entry(for: node, st)
            if fuse_reply_create(req, &reply, fi) != 0 {
                // The request was interrupted: the kernel will not release this handle.
                close(fd)
            }
        case .failure(let err):
            fuse_reply_err(req, err.code)
        }
    }

    private func replyEntry(_ req: fuse_req_t, _ result: Result<(Inode, stat), CaptureErrno>) {
        switch result {
        case .success(let (node, st)):
            var reply = entry(for: node, st)
            fuse_reply_entry(req, &reply)
        case .failure(let err):
            fuse_reply_err(req, err.code)
        }
    }

    // MARK: - removing and renaming

    /// The file id of the entry `name` in `parent` (nil if it has none or does not exist).
    private func entryID(parent: Inode, name: UnsafePointer<CChar>) -> FileID? {
        BackingCalls.readFileID(path: BackingCalls.procPath(parent.fd, name))
    }

    func unlink(_ req: fuse_req_t, _ parentIno: fuse_ino_t, _ name: UnsafePointer<CChar>, directory: Bool) {
        guard let parent = inode(parentIno) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        let time = BackingCalls.now()
        let err: Int32 = namespaceChange {
            let id = entryID(parent: parent, name: name) ?? 0
            if unlinkat(parent.fd, name, directory ? AT_REMOVEDIR : 0) != 0 { return errno }
            let err = BackingCalls.setTimes(of: parent, atime: nil, mtime: time)
            if err != 0 { return err }
            let record: Mutation =
                directory
                ? .rmdir(parent: parent.id, name: bytes(name), file: id, time: time)
                : .unlink(parent: parent.id, name: bytes(name), file: id, time: time)
            guard journal.append(record) != nil else { return EIO }
            dirty.markDirectory(parent.id)
            if id != 0 {
                dirty.markMetadata(id)
                dirty.forgetIfUnlinked(id)
            }
            return 0
        }
        fuse_reply_err(req, err)
    }

    func rename(
        _ req: fuse_req_t, _ parentIno: fuse_ino_t, _ name: UnsafePointer<CChar>, _ newParentIno: fuse_ino_t,
        _ newName: UnsafePointer<CChar>, _ flags: UInt32
    ) {
        guard let parent = inode(parentIno), let newParent = inode(newParentIno) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        let time = BackingCalls.now()
        let err: Int32 = namespaceChange {
            let id = entryID(parent: parent, name: name) ?? 0
            let replaced = entryID(parent: newParent, name: newName)
            if lifeboat_renameat2(parent.fd, name, newParent.fd, newName, flags) != 0 { return errno }
            var err = BackingCalls.setTimes(of: parent, atime: nil, mtime: time)
            if err == 0 && newParent.id != parent.id {
                err = BackingCalls.setTimes(of: newParent, atime: nil, mtime: time)
            }
            if err != 0 { return err }
            let record = Mutation.rename(
                parent: parent.id, name: bytes(name), newParent: newParent.id, newName: bytes(newName), flags: flags,
                file: id, time: time)
            guard journal.append(record) != nil else { return EIO }
            dirty.markDirectory(parent.id)
            dirty.markDirectory(newParent.id)
            if id != 0 { parentMap.add(id, in: newParent.id) }
            if let replaced {
                dirty.markMetadata(replaced)
                dirty.forgetIfUnlinked(replaced)
                parentMap.add(replaced, in: parent.id)
            }
            return 0
        }
        fuse_reply_err(req, err)
    }

    func link(_ req: fuse_req_t, _ ino: fuse_ino_t, _ newParentIno: fuse_ino_t, _ newName: UnsafePointer<CChar>) {
        guard let node = inode(ino), let newParent = inode(newParentIno) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        let time = BackingCalls.now()
        let err: Int32 = namespaceChange {
            if linkat(AT_FDCWD, BackingCalls.procPath(node.fd), newParent.fd, newName, AT_SYMLINK_FOLLOW) != 0 {
                return errno
            }
            let err = BackingCalls.setTimes(of: newParent, atime: nil, mtime: time)
            if err != 0 { return err }
            guard journal.append(.link(file: node.id, parent: newParent.id, name: bytes(newName), time: time)) != nil
            else { return EIO }
            dirty.markDirectory(newParent.id)
            dirty.markMetadata(node.id)
            parentMap.add(node.id, in: newParent.id)
            return 0
        }
        if err != 0 {
            fuse_reply_err(req, err)
            return
        }
        let (st, statErr) = BackingCalls.fstat(node.fd)
        if statErr != 0 {
            fuse_reply_err(req, statErr)
            return
        }
        inodes.addLookup(node.id)
        var reply = entry(for: node, st)
        fuse_reply_entry(req, &reply)
    }

    // MARK: - files

    /// Flags for opening the backing file: O_APPEND is dropped (the kernel sends the offset of
    /// every write, and pwrite on an O_APPEND file ignores it), O_DIRECT too (the kernel's page
    /// cache is the one the service bypasses; the backing file needs no alignment rules).
    func backingOpenFlags(_ flags: Int32) -> Int32 {
        (flags & ~(O_APPEND | BackingCalls.oDirect | O_NOFOLLOW | O_CREAT | O_EXCL)) | O_CLOEXEC
    }

    func open(_ req: fuse_req_t, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        guard let node = inode(ino) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        let fd = Glibc.open(BackingCalls.procPath(node.fd), backingOpenFlags(fi.pointee.flags) & ~O_TRUNC)
        if fd < 0 {
            fuse_reply_err(req, errno)
            return
        }
        fi.pointee.fh = UInt64(fd)
        fi.pointee.keep_cache = 1
        if fuse_reply_open(req, fi) != 0 { close(fd) }
    }

    func read(_ req: fuse_req_t, _ size: Int, _ offset: off_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        var vector = fuse_bufvec()
        vector.count = 1
        vector.idx = 0
        vector.off = 0
        vector.buf.size = size
        vector.buf.flags = fuse_buf_flags(rawValue: FUSE_BUF_IS_FD.rawValue | FUSE_BUF_FD_SEEK.rawValue)
        vector.buf.fd = Int32(truncatingIfNeeded: fi.pointee.fh)
        vector.buf.pos = offset
        fuse_reply_data(req, &vector, FUSE_BUF_SPLICE_MOVE)
    }

    func write(
        _ req: fuse_req_t, _ ino: fuse_ino_t, _ buffer: UnsafePointer<CChar>, _ size: Int, _ offset: off_t,
        _ fi: UnsafeMutablePointer<fuse_file_info>
    ) {
        guard let node = inode(ino) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        let fd = Int32(truncatingIfNeeded: fi.pointee.fh)
        let result: Int = gate.pass {
            node.mutation.withLock { _ in
                let (done, code) = io.pwriteMost(
                    fd, UnsafeRawBufferPointer(start: buffer, count: size), at: UInt64(offset))
                if done == 0 && code != 0 {
                    // The kernel moves mtime before it finds no space: journal the time the
                    // file has now, so a replay matches the backing file.
                    let (st, statErr) = BackingCalls.fstat(fd)
                    if statErr == 0 {
                        let mtime = FileTime(
                            seconds: Int64(st.st_mtim.tv_sec), nanoseconds: UInt32(st.st_mtim.tv_nsec))
                        let record = Mutation.setattr(
                            file: node.id, change: AttributeChange(mtime: mtime), time: mtime)
                        if journal.append(record) != nil { dirty.markMetadata(node.id) }
                    }
                    return -Int(code)
                }
                let time = BackingCalls.now()
                let err = BackingCalls.setModificationTime(fd: fd, time)
                if err != 0 { return -Int(err) }
                let logged = try? journal.appendWrite(
                    file: node.id, offset: UInt64(offset), data: UnsafeRawBufferPointer(start: buffer, count: done),
                    time: time)
                if logged == nil {
                    journal.fail(CaptureError("journal append failed"))
                    return -Int(EIO)
                }
                dirty.markRange(node, UInt64(offset)..<UInt64(offset) + UInt64(done))
                return done
            }
        }
        if result < 0 {
            fuse_reply_err(req, Int32(-result))
            return
        }
        fuse_reply_write(req, result)
    }

    func flush(_ req: fuse_req_t) {
        fuse_reply_err(req, 0)
    }

    func release(_ req: fuse_req_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        close(Int32(truncatingIfNeeded: fi.pointee.fh))
        fuse_reply_err(req, 0)
    }

    /// fsync and fdatasync: the change is durable once its journal records are. The backing
    /// file is flushed later by the agent's checkpoints (a lost host is rebuilt from the
    /// snapshot and the journal, never from its backing dir).
    func fsync(_ req: fuse_req_t, _ datasync: Int32, _ fd: Int32) {
        answerWhenDurable(req)
    }

    /// Answers an fsync once every record so far is durable (EIO when it cannot be), then tells
    /// `fsyncObserver` how long that took from this call to the answer. The observer runs after
    /// the answer, so the service never waits for it.
    func answerWhenDurable(_ req: fuse_req_t) {
        let received = monotonicNanoseconds()
        let durable = journal.makeDurable()
        let answered = monotonicNanoseconds()
        fuse_reply_err(req, durable ? 0 : EIO)
        fsyncObserver(.nanoseconds(Int64(truncatingIfNeeded: answered &- received)))
    }

    func fallocate(
        _ req: fuse_req_t, _ ino: fuse_ino_t, _ mode: Int32, _ offset: off_t, _ length: off_t,
        _ fi: UnsafeMutablePointer<fuse_file_info>
    ) {
        guard let node = inode(ino) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        let fd = Int32(truncatingIfNeeded: fi.pointee.fh)
        let err: Int32 = gate.pass {
            node.mutation.withLock { _ in
                if lifeboat_fallocate(fd, mode, offset, length) != 0 { return errno }
                let time = BackingCalls.now()
                let err = BackingCalls.setModificationTime(fd: fd, time)
                if err != 0 { return err }
                let record = Mutation.fallocate(
                    file: node.id, mode: UInt32(bitPattern: mode), offset: UInt64(offset), length: UInt64(length),
                    time: time)
                guard journal.append(record) != nil else { return EIO }
                dirty.markRange(node, UInt64(offset)..<UInt64(offset) + UInt64(length))
                return 0
            }
        }
        fuse_reply_err(req, err)
    }

    // MARK: - directories

    func opendir(_ req: fuse_req_t, _ ino: fuse_ino_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        guard let node = inode(ino) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        let fd = Glibc.open(BackingCalls.procPath(node.fd), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 {
            fuse_reply_err(req, errno)
            return
        }
        guard let stream = fdopendir(fd) else {
            let err = errno
            close(fd)
            fuse_reply_err(req, err)
            return
        }
        let handle = DirectoryHandle(stream: stream)
        fi.pointee.fh = UInt64(UInt(bitPattern: Unmanaged.passRetained(handle).toOpaque()))
        if fuse_reply_open(req, fi) != 0 {
            Unmanaged<DirectoryHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!).release()
        }
    }

    func directoryHandle(_ fi: UnsafeMutablePointer<fuse_file_info>) -> DirectoryHandle {
        Unmanaged<DirectoryHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!).takeUnretainedValue()
    }

    func readdir(_ req: fuse_req_t, _ size: Int, _ offset: off_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        let handle = directoryHandle(fi)
        let buffer = UnsafeMutablePointer<CChar>.allocate(capacity: size)
        defer { buffer.deallocate() }
        let used: Int = handle.lock.withLock { _ in
            if offset != handle.offset {
                seekdir(handle.stream, Int(offset))
                handle.offset = offset
            }
            var used = 0
            while true {
                errno = 0
                guard let entry = Glibc.readdir(handle.stream) else { break }
                var st = stat()
                st.st_ino = entry.pointee.d_ino
                st.st_mode = mode_t(entry.pointee.d_type) << 12
                let next = entry.pointee.d_off
                let added = withUnsafePointer(to: &entry.pointee.d_name) { namePointer in
                    namePointer.withMemoryRebound(to: CChar.self, capacity: 256) { name in
                        fuse_add_direntry(req, buffer + used, size - used, name, &st, next)
                    }
                }
                if added > size - used {
                    // Does not fit: go back so the next call starts with this entry.
                    seekdir(handle.stream, Int(handle.offset))
                    break
                }
                used += added
                handle.offset = next
            }
            return used
        }
        fuse_reply_buf(req, buffer, used)
    }

    func releasedir(_ req: fuse_req_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        Unmanaged<DirectoryHandle>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(fi.pointee.fh))!).release()
        fuse_reply_err(req, 0)
    }

    func fsyncdir(_ req: fuse_req_t, _ fi: UnsafeMutablePointer<fuse_file_info>) {
        answerWhenDurable(req)
    }

    func statfs(_ req: fuse_req_t) {
        var st = statvfs()
        let fd = Glibc.open(BackingCalls.procPath(root.fd), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd < 0 {
            fuse_reply_err(req, errno)
            return
        }
        defer { close(fd) }
        if fstatvfs(fd, &st) != 0 {
            fuse_reply_err(req, errno)
            return
        }
        fuse_reply_statfs(req, &st)
    }

    // MARK: - xattrs

    private func isReserved(_ name: UnsafePointer<CChar>) -> Bool {
        strncmp(name, FileID.reservedXattrPrefix, FileID.reservedXattrPrefix.utf8.count) == 0
    }

    func setxattr(
        _ req: fuse_req_t, _ ino: fuse_ino_t, _ name: UnsafePointer<CChar>, _ value: UnsafePointer<CChar>, _ size: Int,
        _ flags: Int32
    ) {
        guard let node = inode(ino) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        if isReserved(name) || node.isSymlink {
            fuse_reply_err(req, EPERM)
            return
        }
        let err: Int32 = gate.pass {
            node.mutation.withLock { _ in
                if lifeboat_setxattr(BackingCalls.procPath(node.fd), name, value, size, flags) != 0 { return errno }
                let data = Array(UnsafeRawBufferPointer(start: value, count: size))
                let record = Mutation.setxattr(
                    file: node.id, name: bytes(name), value: data, flags: UInt32(bitPattern: flags))
                guard journal.append(record) != nil else { return EIO }
                dirty.markMetadata(node.id)
                return 0
            }
        }
        fuse_reply_err(req, err)
    }

    func getxattr(_ req: fuse_req_t, _ ino: fuse_ino_t, _ name: UnsafePointer<CChar>, _ size: Int) {
        guard let node = inode(ino) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        if isReserved(name) || node.isSymlink {
            fuse_reply_err(req, ENODATA)
            return
        }
        let path = BackingCalls.procPath(node.fd)
        if size == 0 {
            let got = lifeboat_getxattr(path, name, nil, 0)
            if got < 0 { fuse_reply_err(req, errno) } else { fuse_reply_xattr(req, got) }
            return
        }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 1)
        defer { buffer.deallocate() }
        let got = lifeboat_getxattr(path, name, buffer, size)
        if got < 0 { fuse_reply_err(req, errno) } else { fuse_reply_buf(req, buffer, got) }
    }

    func listxattr(_ req: fuse_req_t, _ ino: fuse_ino_t, _ size: Int) {
        guard let node = inode(ino) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        if node.isSymlink {
            // No race-free way to reach a symlink's xattrs through its O_PATH descriptor; the
            // service cannot set user xattrs on symlinks anyway.
            if size == 0 { fuse_reply_xattr(req, 0) } else { fuse_reply_buf(req, nil, 0) }
            return
        }
        let path = BackingCalls.procPath(node.fd)
        var names: [CChar] = []
        while true {
            let needed = lifeboat_listxattr(path, nil, 0)
            if needed < 0 {
                fuse_reply_err(req, errno)
                return
            }
            names = [CChar](repeating: 0, count: max(needed, 1))
            let got = lifeboat_listxattr(path, &names, needed)
            if got < 0 {
                if errno == ERANGE { continue }
                fuse_reply_err(req, errno)
                return
            }
            names.removeLast(names.count - got)
            break
        }
        // Hide Lifeboat's own names.
        var visible: [CChar] = []
        var start = 0
        while start < names.count {
            let end = names[start...].firstIndex(of: 0) ?? names.count
            let name = Array(names[start..<end])
            let reserved = name.withUnsafeBufferPointer { pointer in
                name.count >= FileID.reservedXattrPrefix.utf8.count
                    && strncmp(pointer.baseAddress!, FileID.reservedXattrPrefix, FileID.reservedXattrPrefix.utf8.count)
                        == 0
            }
            if !reserved {
                visible.append(contentsOf: name)
                visible.append(0)
            }
            start = end + 1
        }
        if size == 0 {
            fuse_reply_xattr(req, visible.count)
        } else if visible.count > size {
            fuse_reply_err(req, ERANGE)
        } else {
            fuse_reply_buf(req, visible, visible.count)
        }
    }

    func removexattr(_ req: fuse_req_t, _ ino: fuse_ino_t, _ name: UnsafePointer<CChar>) {
        guard let node = inode(ino) else {
            fuse_reply_err(req, ESTALE)
            return
        }
        if isReserved(name) || node.isSymlink {
            fuse_reply_err(req, ENODATA)
            return
        }
        let err: Int32 = gate.pass {
            node.mutation.withLock { _ in
                if lifeboat_removexattr(BackingCalls.procPath(node.fd), name) != 0 { return errno }
                guard journal.append(.removexattr(file: node.id, name: bytes(name))) != nil else { return EIO }
                dirty.markMetadata(node.id)
                return 0
            }
        }
        fuse_reply_err(req, err)
    }
}

/// An open directory: its stream and the offset the next readdir continues from.
final class DirectoryHandle: @unchecked Sendable {
    // @unchecked: `stream` and `offset` are only touched while holding `lock`.
    let stream: OpaquePointer
    var offset: off_t = 0
    let lock = Mutex(())

    init(stream: OpaquePointer) { self.stream = stream }

    deinit { closedir(stream) }
}

/// A positive errno as a failure value.
struct CaptureErrno: Error {
    let code: Int32
    init(_ code: Int32) { self.code = code }
}

/// A capture failure with a message for the operator.
public struct CaptureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
