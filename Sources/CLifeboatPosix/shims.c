#define _GNU_SOURCE
#include <fcntl.h>
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
