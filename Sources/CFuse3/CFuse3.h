// The libfuse3 low-level API as Swift sees it. FUSE_USE_VERSION must be set here, before
// the include: a define in Package.swift does not reach the Swift importer.
#ifndef LIFEBOAT_CFUSE3_H
#define LIFEBOAT_CFUSE3_H

#define FUSE_USE_VERSION 312
#include <fuse3/fuse_lowlevel.h>

/// `fuse_session_loop_mt` is a macro naming a versioned symbol; Swift cannot call macros.
static inline int lifeboat_fuse_session_loop_mt(struct fuse_session *se, struct fuse_loop_config *config) {
    return fuse_session_loop_mt(se, config);
}

#endif
