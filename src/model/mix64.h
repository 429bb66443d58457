/* mix64.h: splitmix64's finaliser (internal, not API): a bijective 64-bit mixer, so distinct
 * inputs give distinct outputs. The hybrid RNG streams (verify.c) derive their seeds with it
 * and the server its nonces and tenant hashes; one definition keeps them the same function. */
#ifndef UHLM_MIX64_H
#define UHLM_MIX64_H

#include <stdint.h>

static inline uint64_t uhlm_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#endif
