#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/falloc.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "CLifeboatPosix.h"

ssize_t lifeboat_llistxattr(const char *path, char *list, size_t size) { return llistxattr(path, list, size); }

ssize_t lifeboat_lgetxattr(const char *path, const char *name, void *value, size_t size) {
    return lgetxattr(path, name, value, size);
}

int lifeboat_lsetxattr(const char *path, const char *name, const void *value, size_t size, int flags) {
    return lsetxattr(path, name, value, size, flags);
}

int lifeboat_o_noatime(void) { return O_NOATIME; }
int lifeboat_seek_data(void) { return SEEK_DATA; }
int lifeboat_seek_hole(void) { return SEEK_HOLE; }

ssize_t lifeboat_fgetxattr(int fd, const char *name, void *value, size_t size) {
    return fgetxattr(fd, name, value, size);
}
int lifeboat_fsetxattr(int fd, const char *name, const void *value, size_t size, int flags) {
    return fsetxattr(fd, name, value, size, flags);
}
ssize_t lifeboat_flistxattr(int fd, char *list, size_t size) { return flistxattr(fd, list, size); }
int lifeboat_fremovexattr(int fd, const char *name) { return fremovexattr(fd, name); }
int lifeboat_lremovexattr(const char *path, const char *name) { return lremovexattr(path, name); }

int lifeboat_o_path(void) { return O_PATH; }
int lifeboat_o_direct(void) { return O_DIRECT; }
int lifeboat_at_empty_path(void) { return AT_EMPTY_PATH; }

int lifeboat_renameat2(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, unsigned int flags) {
    return renameat2(olddirfd, oldpath, newdirfd, newpath, flags);
}
unsigned int lifeboat_rename_noreplace(void) { return RENAME_NOREPLACE; }
unsigned int lifeboat_rename_exchange(void) { return RENAME_EXCHANGE; }

int lifeboat_fallocate(int fd, int mode, off_t offset, off_t length) { return fallocate(fd, mode, offset, length); }
int lifeboat_falloc_fl_keep_size(void) { return FALLOC_FL_KEEP_SIZE; }
int lifeboat_falloc_fl_punch_hole(void) { return FALLOC_FL_PUNCH_HOLE; }

int lifeboat_syncfs(int fd) { return syncfs(fd); }

ssize_t lifeboat_getxattr(const char *path, const char *name, void *value, size_t size) {
    return getxattr(path, name, value, size);
}
int lifeboat_setxattr(const char *path, const char *name, const void *value, size_t size, int flags) {
    return setxattr(path, name, value, size, flags);
}
ssize_t lifeboat_listxattr(const char *path, char *list, size_t size) { return listxattr(path, list, size); }
int lifeboat_removexattr(const char *path, const char *name) { return removexattr(path, name); }

long lifeboat_utime_omit(void) { return UTIME_OMIT; }

int lifeboat_fstatat_basics(int dirfd, const char *path, int flags, struct lifeboat_stat_basics *out) {
    struct stat st;
    if (fstatat(dirfd, path, &st, flags) != 0) return -1;
    out->device = (uint64_t)st.st_dev;
    out->mode = (uint32_t)st.st_mode;
    out->uid = (uint32_t)st.st_uid;
    out->gid = (uint32_t)st.st_gid;
    out->mtime_seconds = (int64_t)st.st_mtim.tv_sec;
    out->mtime_nanoseconds = (int64_t)st.st_mtim.tv_nsec;
    return 0;
}

int lifeboat_set_mtime(const char *path, int64_t seconds, int64_t nanoseconds) {
    struct timespec times[2] = {{.tv_sec = 0, .tv_nsec = UTIME_OMIT}, {.tv_sec = seconds, .tv_nsec = nanoseconds}};
    return utimensat(AT_FDCWD, path, times, AT_SYMLINK_NOFOLLOW);
}
