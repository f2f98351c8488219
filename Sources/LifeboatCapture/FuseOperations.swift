import CFuse3
import Glibc

/// The `Passthrough` a request belongs to (the session's userdata). A free function, so the
/// C callbacks below capture nothing.
private func passthrough(_ req: fuse_req_t?) -> Passthrough {
    Unmanaged<Passthrough>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue()
}

/// The libfuse low-level operation table. Each entry is a C function pointer (no captures):
/// it finds the `Passthrough` through the session's userdata and calls the matching method.
/// Every operation a database uses is set; fsync, fsyncdir and flush in particular, because
/// an ENOSYS answer to them makes the kernel skip them from then on.
enum FuseOperations {
    static func table() -> fuse_lowlevel_ops {
        var ops = fuse_lowlevel_ops()
        ops.`init` = { _, conn in
            guard let conn else { return }
            // See every truncation as a setattr, every write as it happens, every suid drop
            // as a chmod: no kernel-side shortcuts that would bypass the journal.
            conn.pointee.want &= ~UInt32(FUSE_CAP_ATOMIC_O_TRUNC | FUSE_CAP_WRITEBACK_CACHE | FUSE_CAP_HANDLE_KILLPRIV)
            conn.pointee.want &= ~UInt32(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE)
            if conn.pointee.capable & UInt32(FUSE_CAP_PARALLEL_DIROPS) != 0 {
                conn.pointee.want |= UInt32(FUSE_CAP_PARALLEL_DIROPS)
            }
            conn.pointee.max_write = 1 << 20
            conn.pointee.max_readahead = 1 << 20
        }
        ops.lookup = { req, parent, name in passthrough(req).lookup(req!, parent, name!) }
        ops.forget = { req, ino, count in
            passthrough(req).forget(ino, count)
            fuse_reply_none(req)
        }
        ops.forget_multi = { req, count, list in
            let fs = passthrough(req)
            for index in 0..<count {
                fs.forget(list![index].ino, list![index].nlookup)
            }
            fuse_reply_none(req)
        }
        ops.getattr = { req, ino, _ in passthrough(req).getattr(req!, ino) }
        ops.setattr = { req, ino, attr, valid, fi in passthrough(req).setattr(req!, ino, attr!, valid, fi) }
        ops.readlink = { req, ino in passthrough(req).readlink(req!, ino) }
        ops.mknod = { req, parent, name, mode, rdev in passthrough(req).mknod(req!, parent, name!, mode, rdev) }
        ops.mkdir = { req, parent, name, mode in passthrough(req).mkdir(req!, parent, name!, mode) }
        ops.unlink = { req, parent, name in passthrough(req).unlink(req!, parent, name!, directory: false) }
        ops.rmdir = { req, parent, name in passthrough(req).unlink(req!, parent, name!, directory: true) }
        ops.symlink = { req, target, parent, name in passthrough(req).symlink(req!, target!, parent, name!) }
        ops.rename = { req, parent, name, newParent, newName, flags in
            passthrough(req).rename(req!, parent, name!, newParent, newName!, flags)
        }
        ops.link = { req, ino, newParent, newName in passthrough(req).link(req!, ino, newParent, newName!) }
        ops.open = { req, ino, fi in passthrough(req).open(req!, ino, fi!) }
        ops.read = { req, _, size, offset, fi in passthrough(req).read(req!, size, offset, fi!) }
        ops.write = { req, ino, buffer, size, offset, fi in
            passthrough(req).write(req!, ino, buffer!, size, offset, fi!)
        }
        ops.flush = { req, _, _ in passthrough(req).flush(req!) }
        ops.release = { req, _, fi in passthrough(req).release(req!, fi!) }
        ops.fsync = { req, _, datasync, fi in
            passthrough(req).fsync(req!, datasync, Int32(truncatingIfNeeded: fi!.pointee.fh))
        }
        ops.opendir = { req, ino, fi in passthrough(req).opendir(req!, ino, fi!) }
        ops.readdir = { req, _, size, offset, fi in passthrough(req).readdir(req!, size, offset, fi!) }
        ops.releasedir = { req, _, fi in passthrough(req).releasedir(req!, fi!) }
        ops.fsyncdir = { req, _, _, fi in passthrough(req).fsyncdir(req!, fi!) }
        ops.statfs = { req, _ in passthrough(req).statfs(req!) }
        ops.setxattr = { req, ino, name, value, size, flags in
            passthrough(req).setxattr(req!, ino, name!, value!, size, flags)
        }
        ops.getxattr = { req, ino, name, size in passthrough(req).getxattr(req!, ino, name!, size) }
        ops.listxattr = { req, ino, size in passthrough(req).listxattr(req!, ino, size) }
        ops.removexattr = { req, ino, name in passthrough(req).removexattr(req!, ino, name!) }
        ops.create = { req, parent, name, mode, fi in passthrough(req).create(req!, parent, name!, mode, fi!) }
        ops.fallocate = { req, ino, mode, offset, length, fi in
            passthrough(req).fallocate(req!, ino, mode, offset, length, fi!)
        }
        return ops
    }
}
