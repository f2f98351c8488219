// CRC-32C (Castagnoli) for journal records: the SSE4.2 crc32 instruction where the CPU has
// it (about 8 bytes per cycle), a table otherwise. Same results either way.
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "CLifeboatPosix.h"

// Built once, before first use, under pthread_once: FUSE worker threads call in concurrently.
static uint32_t table[256];
static pthread_once_t setup_once = PTHREAD_ONCE_INIT;
#if defined(__x86_64__)
static int has_sse42 = 0;
#endif

static void setup(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t crc = i;
        for (int k = 0; k < 8; k++) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
        table[i] = crc;
    }
#if defined(__x86_64__)
    has_sse42 = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#endif
}

static uint32_t crc32c_table(uint32_t crc, const unsigned char *p, size_t n) {
    while (n--) crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}
#endif

uint32_t lifeboat_crc32c(uint32_t crc, const void *buffer, size_t length) {
    const unsigned char *p = buffer;
    uint32_t value = ~crc;
    pthread_once(&setup_once, setup);
#if defined(__x86_64__)
    if (has_sse42) return ~crc32c_hw(value, p, length);
#endif
    return ~crc32c_table(value, p, length);
}
