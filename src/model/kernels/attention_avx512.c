/* attention_avx512.c: the AVX-512 attention kernel (contract in attention.h).
 *
 * Scores: 16 positions at a time, each one 16-lane product of q and the key row (one vector per 16
 * dimensions, summed lane-wise), then one transposing reduction turns the 16 vectors into one
 * vector of 16 scores; a horizontal sum per position cost more than the products at head sizes of
 * 32-64. Softmax: a vector exp (Cephes' polynomial; at most 1.01 ulp from the exact value over
 * [-87.3, 0], measured at 878k points). Values: the weighted sum of value rows with the output held
 * in registers, in several interleaved sets when the head is narrow, so consecutive positions'
 * multiply-adds do not wait on one another. Heads wider than 128 use the portable kernel. */
#include "model/kernels/attention.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>

#include "model/kernels/vmath_x86.h"

#define INL static inline __attribute__((always_inline, target("avx512f,avx512dq,fma")))
#define TGT __attribute__((target("avx512f,avx512dq,fma")))

#define MAXQ 8 /* 16-float chunks of a head kept in registers: hd <= 128 */

/* Lane j of the result is the sum of the 16 lanes of v[slot(j)], slot(j) = 4 (j % 4) + j / 4: four
 * rounds of pairwise shuffles and adds, halving the partial sums of two vectors into one each round
 * (sums of lanes i and i+8, then i and i+4, i and i+2, i and i+1). */
INL __m512 reduce16(const __m512 v[16]) {
    __m512 a[8], b[4], c[2];
    for (int i = 0; i < 8; i++)
        a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int i = 0; i < 4; i++)
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int i = 0; i < 2; i++)
        c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    return _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

INL __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1); }

/* Chunk c of a head row: the last chunk is masked to the head's width. */
#define CHUNK(p, c)                                                                                \
    ((c) == NQ - 1 ? _mm512_maskz_loadu_ps(last, (p) + 16 * (c)) : _mm512_loadu_ps((p) + 16 * (c)))

/* q . k_t for one position as a vector of lane-wise partial sums. */
#define QK(kt)                                                                                     \
    ({                                                                                             \
        __m512 s_ = _mm512_mul_ps(qv[0], CHUNK(kt, 0));                                            \
        _Pragma("GCC unroll 8") for (int c = 1; c < NQ; c++) s_ =                                  \
            _mm512_fmadd_ps(qv[c], CHUNK(kt, c), s_);                                              \
        s_;                                                                                        \
    })

/* NQ = ceil(hd / 16) is a constant in every expansion, so chunk loops unroll and q and the outputs
 * stay in registers. */
INL void attn_nq(const uhlm_attn_args *a, const int NQ) {
    const int n = a->n_pos;
    const size_t st = a->stride;
    const __mmask16 last = lanes(a->hd - 16 * (NQ - 1));
    float *att = a->att;
    __m512 qv[MAXQ];
    _Pragma("GCC unroll 8") for (int c = 0; c < NQ; c++) qv[c] = CHUNK(a->q, c);
    const __m512 scale = _mm512_set1_ps(a->scale);

    __m512 vmax = _mm512_set1_ps(-INFINITY);
    int t0 = 0;
    for (; t0 + 16 <= n; t0 += 16) {
        __m512 part[16];
        _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++) {
            const float *kt = a->k + (size_t)(t0 + j) * st;
            part[4 * (j % 4) + j / 4] = QK(kt);
        }
        const __m512 sc = _mm512_mul_ps(reduce16(part), scale);
        _mm512_storeu_ps(att + t0, sc);
        vmax = _mm512_max_ps(vmax, sc);
    }
    if (t0 < n) {
        __m512 part[16];
        for (int j = 0; j < 16; j++) part[j] = _mm512_setzero_ps();
        for (int j = 0; t0 + j < n; j++) {
            const float *kt = a->k + (size_t)(t0 + j) * st;
            part[4 * (j % 4) + j / 4] = QK(kt);
        }
        const __mmask16 m = lanes(n - t0);
        const __m512 sc = _mm512_mul_ps(reduce16(part), scale);
        _mm512_mask_storeu_ps(att + t0, m, sc);
        vmax = _mm512_mask_max_ps(vmax, m, vmax, sc);
    }

    const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(vmax));
    __m512 vsum = _mm512_setzero_ps();
    for (t0 = 0; t0 < n; t0 += 16) {
        const __mmask16 m = lanes(n - t0);
        const __m512 e =
            _mm512_maskz_mov_ps(m, uhlm_exp16_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, att + t0), mx)));
        _mm512_mask_storeu_ps(att + t0, m, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));

    /* P interleaved output sets keep at least four multiply-add chains in flight / */
    const int P = NQ == 1 ? 4 : NQ == 2 ? 2 : 1;
    __m512 o[4][MAXQ];
    /* all of it: the generic expansion cannot tell which sets it uses */
    for (int p = 0; p < 4; p++)
        for (int c = 0; c < MAXQ; c++) o[p][c] = _mm512_setzero_ps();
    int t = 0;
    for (; t + P <= n; t += P) _Pragma("GCC unroll 4") for (int p = 0; p < P; p++) {
            const __m512 w = _mm512_set1_ps(att[t + p]);
            const float *vt = a->v + (size_t)(t + p) * st;
            _Pragma("GCC unroll 8") for (int c = 0; c < NQ; c++) o[p][c] =
                _mm512_fmadd_ps(w, CHUNK(vt, c), o[p][c]);
        }
    for (; t < n; t++) {
        const __m512 w = _mm512_set1_ps(att[t]);
        const float *vt = a->v + (size_t)t * st;
        _Pragma("GCC unroll 8") for (int c = 0; c < NQ; c++) o[0][c] =
            _mm512_fmadd_ps(w, CHUNK(vt, c), o[0][c]);
    }
    _Pragma("GCC unroll 8") for (int c = 0; c < NQ; c++) {
        __m512 s = o[0][c];
        if (P == 4)
            s = _mm512_add_ps(_mm512_add_ps(o[0][c], o[1][c]), _mm512_add_ps(o[2][c], o[3][c]));
        else if (P == 2)
            s = _mm512_add_ps(o[0][c], o[1][c]);
        s = _mm512_mul_ps(s, inv);
        if (c == NQ - 1)
            _mm512_mask_storeu_ps(a->out + 16 * c, last, s);
        else
            _mm512_storeu_ps(a->out + 16 * c, s);
    }
}

TGT static void attn_avx512(const uhlm_attn_args *a) {
    switch ((a->hd + 15) / 16) {
    case 1: attn_nq(a, 1); break;
    case 2: attn_nq(a, 2); break;
    case 3: attn_nq(a, 3); break;
    case 4: attn_nq(a, 4); break;
    case 5: attn_nq(a, 5); break;
    case 6: attn_nq(a, 6); break;
    case 7: attn_nq(a, 7); break;
    case 8: attn_nq(a, 8); break;
    default: uhlm_attn_kernel(UHLM_SIMD_SCALAR)(a); break;
    }
}

uhlm_attn_fn uhlm_attn_kernel_avx512(void) { return attn_avx512; }

#else

uhlm_attn_fn uhlm_attn_kernel_avx512(void) { return NULL; }

#endif
