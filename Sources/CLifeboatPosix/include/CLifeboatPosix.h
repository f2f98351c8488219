#ifndef LIFEBOAT_CPOSIX_H
#define LIFEBOAT_CPOSIX_H

#include <stddef.h>
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

#endif
