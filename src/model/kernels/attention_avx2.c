/* attention_avx2.c: the AVX2 attention kernel (contract in attention.h), the AVX-512 kernel's
 * scheme on 8 lanes: 8 positions' q.k products reduced to one vector of scores by a transposing
 * reduction, a vector exp, and the value sum in registers, in slabs of up to 64 dimensions (16 ymm
 * registers do not hold more). Heads wider than 128 use the portable kernel. */
#include "model/kernels/attention.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>

#include "model/kernels/vmath_x86.h"

#define INL static inline __attribute__((always_inline, target("avx2,fma")))
#define TGT __attribute__((target("avx2,fma")))

#define MAXQ 16 /* 8-float chunks: hd <= 128 */
#define SLAB 8  /* chunks of the output held in registers at once */

/* Lane j of the result is the sum of the 8 lanes of v[slot(j)], slot(j) = 2 (j % 4) + j / 4. */
INL __m256 reduce8(const __m256 v[8]) {
    __m256 a[4], b[2];
    for (int i = 0; i < 4; i++)
        a[i] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * i], v[2 * i + 1], 0x31));
    for (int i = 0; i < 2; i++)
        b[i] = _mm256_add_ps(_mm256_shuffle_ps(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm256_add_ps(_mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm256_shuffle_ps(b[0], b[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

INL float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

INL float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* all-ones in the first n lanes */
INL __m256i lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#define CHUNK(p, c)                                                                                \
    ((c) == NQ - 1 ? _mm256_maskload_ps((p) + 8 * (c), last) : _mm256_loadu_ps((p) + 8 * (c)))

INL void attn_nq(const uhlm_attn_args *a, const int NQ) {
    const int n = a->n_pos;
    const size_t st = a->stride;
    const __m256i last = lanes(a->hd - 8 * (NQ - 1));
    float *att = a->att;
    __m256 qv[MAXQ];
    _Pragma("GCC unroll 16") for (int c = 0; c < NQ; c++) qv[c] = CHUNK(a->q, c);
    const __m256 scale = _mm256_set1_ps(a->scale);

    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (int t0 = 0; t0 < n; t0 += 8) {
        const int cnt = n - t0 < 8 ? n - t0 : 8;
        __m256 part[8];
        if (cnt < 8)
            for (int j = 0; j < 8; j++) part[j] = _mm256_setzero_ps();
        _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {
            if (j >= cnt) break;
            const float *kt = a->k + (size_t)(t0 + j) * st;
            __m256 s = _mm256_mul_ps(qv[0], CHUNK(kt, 0));
            _Pragma("GCC unroll 16") for (int c = 1; c < NQ; c++) s =
                _mm256_fmadd_ps(qv[c], CHUNK(kt, c), s);
            part[2 * (j % 4) + j / 4] = s;
        }
        __m256 sc = _mm256_mul_ps(reduce8(part), scale);
        if (cnt < 8) {
            const __m256i m = lanes(cnt);
            _mm256_maskstore_ps(att + t0, m, sc);
            sc = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), sc, _mm256_castsi256_ps(m));
        } else {
            _mm256_storeu_ps(att + t0, sc);
        }
        vmax = _mm256_max_ps(vmax, sc);
    }

    const __m256 mx = _mm256_set1_ps(hmax8(vmax));
    __m256 vsum = _mm256_setzero_ps();
    for (int t0 = 0; t0 < n; t0 += 8) {
        const __m256i m = lanes(n - t0);
        const __m256 e = _mm256_and_ps(_mm256_castsi256_ps(m),
                                       uhlm_exp8_neg(_mm256_sub_ps(_mm256_maskload_ps(att + t0, m), mx)));
        _mm256_maskstore_ps(att + t0, m, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    const __m256 inv = _mm256_set1_ps(1.0f / hsum8(vsum));

    /* P interleaved output sets keep at least four multiply-add chains in flight / */
    const int P = NQ == 1 ? 4 : NQ == 2 ? 2 : 1;
    for (int c0 = 0; c0 < NQ; c0 += SLAB) {
        const int ns = NQ - c0 < SLAB ? NQ - c0 : SLAB;
        __m256 o[4][SLAB];
        /* all of it: the generic expansion cannot tell which sets it uses */
        for (int p = 0; p < 4; p++)
            for (int c = 0; c < SLAB; c++) o[p][c] = _mm256_setzero_ps();
        int t = 0;
        for (; t + P <= n; t += P) _Pragma("GCC unroll 4") for (int p = 0; p < P; p++) {
                const __m256 w = _mm256_set1_ps(att[t + p]);
                const float *vt = a->v + (size_t)(t + p) * st;
                _Pragma("GCC unroll 8") for (int c = 0; c < ns; c++) o[p][c] =
                    _mm256_fmadd_ps(w, CHUNK(vt, c0 + c), o[p][c]);
            }
        for (; t < n; t++) {
            const __m256 w = _mm256_set1_ps(att[t]);
            const float *vt = a->v + (size_t)t * st;
            _Pragma("GCC unroll 8") for (int c = 0; c < ns; c++) o[0][c] =
                _mm256_fmadd_ps(w, CHUNK(vt, c0 + c), o[0][c]);
        }
        _Pragma("GCC unroll 8") for (int c = 0; c < ns; c++) {
            __m256 s = o[0][c];
            if (P == 4)
                s = _mm256_add_ps(_mm256_add_ps(o[0][c], o[1][c]), _mm256_add_ps(o[2][c], o[3][c]));
            else if (P == 2)
                s = _mm256_add_ps(o[0][c], o[1][c]);
            s = _mm256_mul_ps(s, inv);
            if (c0 + c == NQ - 1)
                _mm256_maskstore_ps(a->out + 8 * (c0 + c), last, s);
            else
                _mm256_storeu_ps(a->out + 8 * (c0 + c), s);
        }
    }
}

TGT static void attn_avx2(const uhlm_attn_args *a) {
    switch ((a->hd + 7) / 8) {
    case 1: attn_nq(a, 1); break;
    case 2: attn_nq(a, 2); break;
    case 3: attn_nq(a, 3); break;
    case 4: attn_nq(a, 4); break;
    case 5: attn_nq(a, 5); break;
    case 6: attn_nq(a, 6); break;
    case 8: attn_nq(a, 8); break;
    case 16: attn_nq(a, 16); break;
    default:
        if (a->hd <= 8 * MAXQ)
            attn_nq(a, (a->hd + 7) / 8);
        else
            uhlm_attn_kernel(UHLM_SIMD_SCALAR)(a);
        break;
    }
}

uhlm_attn_fn uhlm_attn_kernel_avx2(void) { return attn_avx2; }

#else

uhlm_attn_fn uhlm_attn_kernel_avx2(void) { return NULL; }

#endif
