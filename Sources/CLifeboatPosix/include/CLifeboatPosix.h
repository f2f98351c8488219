#ifndef LIFEBOAT_CPOSIX_H
#define LIFEBOAT_CPOSIX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/// Linux calls and constants that Glibc's Swift module does not show (xattrs, and values
/// glibc defines only under _GNU_SOURCE). Thin wrappers: same arguments, same errno.

ssize_t lifeboat_llistxattr(const char *path, char *list, size_t size);
ssize_t lifeboat_lgetxattr(const char *path, const char *name, void *value, size_t size);
int lifeboat_lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags);

/// O_NOATIME: read without updating access times (only allowed for the file's owner or root).
int lifeboat_o_noatime(void);
/// SEEK_DATA and SEEK_HOLE for lseek on sparse files.
int lifeboat_seek_data(void);
int lifeboat_seek_hole(void);

ssize_t lifeboat_fgetxattr(int fd, const char *name, void *value, size_t size);
int lifeboat_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags);
ssize_t lifeboat_flistxattr(int fd, char *list, size_t size);
int lifeboat_fremovexattr(int fd, const char *name);
int lifeboat_lremovexattr(const char *path, const char *name);
/// The following variants, for /proc/self/fd/N paths of O_PATH descriptors.
ssize_t lifeboat_getxattr(const char *path, const char *name, void *value, size_t size);
int lifeboat_setxattr(const char *path, const char *name, const void *value, size_t size, int flags);
ssize_t lifeboat_listxattr(const char *path, char *list, size_t size);
int lifeboat_removexattr(const char *path, const char *name);

/// Open flags and *at() flags for the capture passthrough.
int lifeboat_o_path(void);
int lifeboat_o_direct(void);
int lifeboat_at_empty_path(void);
/// renameat2(2) and its flags (RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT).
int lifeboat_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags);
unsigned int lifeboat_rename_noreplace(void);
unsigned int lifeboat_rename_exchange(void);
/// fallocate(2) and its punch-hole flags.
int lifeboat_fallocate(int fd, int mode, off_t offset, off_t length);
int lifeboat_falloc_fl_keep_size(void);
int lifeboat_falloc_fl_punch_hole(void);
/// CRC-32C (Castagnoli) of `length` bytes, continuing `crc` (start with 0).
uint32_t lifeboat_crc32c(uint32_t crc, const void *buffer, size_t length);
/// syncfs(2): flush one filesystem.
int lifeboat_syncfs(int fd);
/// UTIME_OMIT for utimensat/futimens: "leave this time as it is" (Swift does not import it).
long lifeboat_utime_omit(void);

/// The fields of fstatat(2) that the agent reads, in a struct of this module (modules that
/// also see Dispatch cannot use `struct stat`'s members under MemberImportVisibility).
struct lifeboat_stat_basics {
    uint64_t device;
    uint32_t mode;
    uint32_t uid;
    uint32_t gid;
    int64_t mtime_seconds;
    int64_t mtime_nanoseconds;
};
/// fstatat(dirfd, path, ..., flags) into `out`; 0 or -1 with errno set.
int lifeboat_fstatat_basics(int dirfd, const char *path, int flags, struct lifeboat_stat_basics *out);
/// Sets the mtime of `path` (not following a symlink), leaving its atime; 0 or -1 with errno.
int lifeboat_set_mtime(const char *path, int64_t seconds, int64_t nanoseconds);


/// Starts `/bin/sh -c command` in a new session (its own process group), stdin from
/// /dev/null, stdout and stderr appended to `log_path`, no inherited descriptors past 2 and
/// default signal handling. Returns the child's pid, or -1 with errno set.
int lifeboat_spawn_shell(const char *command, const char *log_path);

#endif
