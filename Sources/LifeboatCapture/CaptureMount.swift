import CFuse3
import Glibc
public import LifeboatSystem
import Synchronization

/// A FUSE mount of a data dir as a journaled passthrough over its backing dir.
///
/// `start()` mounts and serves requests on libfuse's worker threads; `stop()` ends the session
/// and detaches the mount, so processes still using it get errors instead of hanging. The
/// mount uses `auto_unmount`: if the agent is killed, fusermount3 removes it.
public final class CaptureMount: Sendable {
    public let dataDir: String
    public let backingDir: String
    let passthrough: Passthrough
    private let session = Mutex<Session?>(nil)

    private struct Session: @unchecked Sendable {
        // @unchecked: the session pointer is only used by the loop thread and by stop(),
        // which libfuse allows (fuse_session_exit may be called from any thread).
        var pointer: OpaquePointer
        var thread: pthread_t
        var userdata: UnsafeMutableRawPointer
    }

    /// A mount of `dataDir` over `backingDir`; `calls` is the seam the writes into the backing
    /// files go through (tests inject failures there; the journal has its own, in its writer).
    ///
    /// `fsyncObserver` is told how long each fsync, fdatasync and directory fsync of the mount
    /// took, from the request's arrival to its answer (the journal's fsync and the wait for sync
    /// peers included). It is called on a FUSE worker thread after the answer: it must be cheap,
    /// must not allocate and must not block.
    public init(
        dataDir: String, backingDir: String, journal: CaptureJournal, calls: any SystemCalls = RealSystemCalls(),
        fsyncObserver: @escaping @Sendable (Duration) -> Void = { _ in }
    ) throws(CaptureError) {
        self.dataDir = dataDir
        self.backingDir = backingDir
        passthrough = try Passthrough(
            backingDir: backingDir, journal: journal, calls: calls, fsyncObserver: fsyncObserver)
    }

    /// Mounts the data dir and starts serving. Clears a stale mount left by a killed agent;
    /// refuses a data dir that is already a live mount.
    public func start(threads: Int = 16) throws(CaptureError) {
        try MountTable.prepareMountPoint(dataDir)
        var arguments = [
            "lifeboatd", "-o", "allow_other,default_permissions,auto_unmount,fsname=lifeboat,subtype=lifeboat",
        ]
        var argv: [UnsafeMutablePointer<CChar>?] = arguments.indices.map { strdup(arguments[$0]) }
        defer { for pointer in argv { free(pointer) } }
        arguments.removeAll()
        let userdata = Unmanaged.passRetained(passthrough).toOpaque()
        var operations = FuseOperations.table()
        let created: OpaquePointer? = argv.withUnsafeMutableBufferPointer { pointer in
            var args = fuse_args(argc: Int32(pointer.count), argv: pointer.baseAddress, allocated: 0)
            let se = fuse_session_new(&args, &operations, MemoryLayout<fuse_lowlevel_ops>.size, userdata)
            fuse_opt_free_args(&args)
            return se
        }
        guard let se = created else {
            Unmanaged<Passthrough>.fromOpaque(userdata).release()
            throw CaptureError("cannot create a FUSE session for \(dataDir)")
        }
        guard fuse_session_mount(se, dataDir) == 0 else {
            fuse_session_destroy(se)
            Unmanaged<Passthrough>.fromOpaque(userdata).release()
            throw CaptureError(
                "cannot mount \(dataDir) with FUSE (is /dev/fuse there, and fusermount3 installed? see the log above)")
        }
        let context = LoopContext(session: se, threads: threads)
        var thread = pthread_t()
        let rc = pthread_create(
            &thread, nil,
            { raw in
                let context = Unmanaged<LoopContext>.fromOpaque(raw!).takeRetainedValue()
                let config = fuse_loop_cfg_create()
                fuse_loop_cfg_set_max_threads(config, UInt32(context.threads))
                fuse_loop_cfg_set_clone_fd(config, 1)
                _ = lifeboat_fuse_session_loop_mt(context.session, config)
                fuse_loop_cfg_destroy(config)
                return nil
            }, Unmanaged.passRetained(context).toOpaque())
        guard rc == 0 else {
            fuse_session_unmount(se)
            fuse_session_destroy(se)
            Unmanaged<Passthrough>.fromOpaque(userdata).release()
            throw CaptureError("cannot start the FUSE loop thread: \(errnoText(rc))")
        }
        session.withLock { $0 = Session(pointer: se, thread: thread, userdata: userdata) }
    }

    /// Ends the session and removes the mount; returns when every worker has stopped.
    public func stop() {
        guard
            let current = session.withLock({ state -> Session? in
                defer { state = nil }
                return state
            })
        else { return }
        fuse_session_exit(current.pointer)
        // Detach: the loop's reads of /dev/fuse end, and users of the mount get errors.
        umount2(dataDir, Int32(MNT_DETACH))
        pthread_join(current.thread, nil)
        fuse_session_unmount(current.pointer)
        fuse_session_destroy(current.pointer)
        passthrough.inodes.removeAll()
        Unmanaged<Passthrough>.fromOpaque(current.userdata).release()
    }

    /// Whether the FUSE loop is still running (false after the mount was removed from outside).
    public var isServing: Bool {
        guard let current = session.withLock({ $0 }) else { return false }
        return fuse_session_exited(current.pointer) == 0 && MountTable.isMountPoint(dataDir)
    }
}

/// What the loop thread needs.
private final class LoopContext: @unchecked Sendable {
    // @unchecked: handed to exactly one thread, never changed.
    let session: OpaquePointer
    let threads: Int
    init(session: OpaquePointer, threads: Int) {
        self.session = session
        self.threads = threads
    }
}
