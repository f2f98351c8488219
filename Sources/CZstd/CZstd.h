#ifndef LIFEBOAT_CZSTD_H
#define LIFEBOAT_CZSTD_H
#include <zstd.h>
#endif
