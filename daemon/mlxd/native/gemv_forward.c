/* mlxd: few-row products for MLX's CPU backend on OpenBLAS (see mlxd/gemv_forward.py).
 *
 * Preloaded before OpenBLAS (LD_PRELOAD=this:libopenblas.so.0), this cblas_sgemm takes the
 * calls MLX's CPU backend makes. A row-major product with at most MAX_ROWS rows of A (a decode
 * step: one token; a speculative verify pass: a few) is computed here, each tile of B read from
 * memory once for all rows; OpenBLAS's sgemm packs all of B first, whatever the number of rows.
 * Every other call (prefill, transposed A, column-major) goes to OpenBLAS's cblas_sgemm.
 *
 * Each output element is summed in one fixed order whatever the number of rows and however the
 * work is split between threads: a row of a verify pass is bit-identical to the same row
 * computed alone, so greedy speculative decoding gives exactly the plain decode's tokens.
 *
 * Quantized shadows (mlxd_gemv_shadow_add): a float weight matrix dequantized from 4- or 8-bit
 * affine weights (w = scale * q + bias per group, as the embedded GGUF's) can be registered
 * with its quantized form; a product with that B then reads the quantized form (0.75 or 1.25
 * bytes a weight instead of 4: a decode step is bound by reading every weight) and unpacks
 * each weight to the very float the matrix holds (checked for every weight when it is
 * registered), so the sums, and the logits, are bit-identical to the float product.
 *
 * softmax_product: a product called with alpha SOFTMAX_ALPHA is C = softmax(A) B, the last
 * matmul of the attention mlxd/models/attention.py builds for decode steps and verify passes,
 * row by row with a vectorized exp (MLX's CPU softmax is scalar); with CAUSAL_SOFTMAX_ALPHA, a
 * verify pass's, under the causal mask (each row's own keys: no mask array, no `where`).
 *
 * swiglu_product: alpha SWIGLU_ALPHA is C = silu(A B) * beta C, element by element: the SwiGLU
 * of decode steps and verify passes (mlxd/models/activation.py's swiglu), on the same exp.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 }; /* CBLAS_ORDER, CBLAS_TRANSPOSE */
/* Up to 16 rows this beats OpenBLAS's sgemm on the embedded model's shapes (2 x86 cores);
 * a verify pass of the default 8 drafts has 9. PREFETCH_ROWS: how far ahead rows of B are
 * fetched (rows are short, 2-6 KB: the hardware prefetcher alone falls behind). */
enum { MAX_ROWS = 16, MAX_WORKERS = 3, LANES = 16, PREFETCH_ROWS = 8 };
/* Products of up to this many rows read a registered quantized shadow in registers (a decode
 * step, a pass with one draft token; on AVX-512 two: 3 rows in one tile, each weight unpacked
 * once, a 3-token pass ~1.2x a step where unpacking into L1 cost ~1.5x; elsewhere its 12
 * accumulators would not fit the registers); more rows unpack a few rows of it at a time into
 * L1 and make the sums there (part_unpacked): unpacking in registers again for each pair of
 * rows measured no faster than reading the floats. */
#if defined(__AVX512F__)
enum { SHADOW_ROWS = 3 };
#else
enum { SHADOW_ROWS = 2 };
#endif
/* Read by mlxd/gemv_forward.py: speculation prices passes of up to this many tokens apart. */
const int mlxd_shadow_rows = SHADOW_ROWS;
/* The alpha with which mlxd/models/attention.py asks for C = softmax(A) B (softmax_product). */
#define SOFTMAX_ALPHA (-1.0e30f)
/* ... and C = softmax(A) B under a causal mask: beta is then the number of query rows R of
 * each group of A's rows (a verify pass's tokens), and row i sees the first K - R + 1 + i % R
 * keys (the mask MLX would apply, without building or applying it: a verify pass's `where`
 * over all its scores). C is not read (beta C = 0). */
#define CAUSAL_SOFTMAX_ALPHA (-3.0e30f)
enum { MAX_DIM = 256 }; /* softmax_product's widest rows of B in registers */
/* The alpha with which mlxd/models/activation.py asks for C = silu(A B) * beta C. */
#define SWIGLU_ALPHA (-2.0e30f)

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *,
                         int, float, float *, int);
typedef float vec __attribute__((vector_size(LANES * 4)));

static sgemm_fn next_sgemm;
static int (*next_get_threads)(void);

#if defined(__x86_64__) || defined(__i386__)
#define relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define relax() __asm__ volatile("yield")
#else
#define relax() ((void)0)
#endif

/* The number of products computed here so far (read by tests through ctypes). */
long mlxd_gemv_forwarded = 0;

/* ---- the kernels: C[m][n] for n in [n0, n1) ---------------------------------------------- */

struct shadow {
    const float *_Atomic b; /* the float matrix (N x K, row-major) it stands for; the key */
    _Atomic int users;      /* products reading it now (shadow_pin): a removal waits for 0 */
    int n, k, bits, group;
    const unsigned char *q; /* per row: K/2 bytes (4-bit, see dequant) or K bytes (8-bit) */
    const float *scales, *biases; /* per row: K / group each */
};

struct product {
    int rows, n, k, trans_b;
    float alpha, beta;
    const float *a, *b;
    float *c;
    int lda, ldb, ldc;
    const struct shadow *sh; /* B's quantized form, or NULL */
    /* part_unpacked's: b is its buffer of a few rows, in L1 (not prefetched: past its end,
     * prefetches evict), its first row B's row b_row (0 for every other product). */
    int unpacked, b_row;
};

static inline __attribute__((always_inline)) vec load(const float *p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* Loops over a tile's rows and columns, unrolled: its accumulators stay in registers. */
#define UNROLL _Pragma("GCC unroll 16")

typedef float half_vec __attribute__((vector_size(LANES * 2)));
typedef float quarter_vec __attribute__((vector_size(LANES)));

/* The lanes' sum, in one tree: s8[i] = v[i] + v[i + 8], s4[i] = s8[i] + s8[i + 4], then
 * (s4[0] + s4[2]) + (s4[1] + s4[3]); the first two levels as whole-vector adds (a scalar
 * tree made the sums as long as a short row's products). */
static inline __attribute__((always_inline)) float lane_sum(vec v) {
#if defined(__clang__) || __GNUC__ >= 12
    /* Halves by shuffles: through memcpy, GCC 12 kept every tile's accumulators in memory,
     * a store and a load around each step of the sums (the products ran ~1.3x slower). */
    half_vec s8 = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                  __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    quarter_vec s4 = __builtin_shufflevector(s8, s8, 0, 1, 2, 3) +
                     __builtin_shufflevector(s8, s8, 4, 5, 6, 7);
#else
    half_vec lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char *)&v + sizeof lo, sizeof hi);
    half_vec s8 = lo + hi;
    quarter_vec a, b;
    memcpy(&a, &s8, sizeof a);
    memcpy(&b, (const char *)&s8 + sizeof a, sizeof b);
    quarter_vec s4 = a + b;
#endif
    return (s4[0] + s4[2]) + (s4[1] + s4[3]);
}

/* alpha * sum + beta * C, rounded the same way in every kernel: spelled as fmaf (with beta 1
 * the one rounding of an addition), since -march=native let GCC fuse `a * b + c * d` one way
 * or the other where it was inlined (a shadow's product of 1-2 rows then differed from the
 * float one when beta was neither 0 nor 1). */
static inline __attribute__((always_inline)) void store(const struct product *p, int m, int n,
                                                          float sum) {
    float *out = p->c + (long)m * p->ldc + n;
    const float scaled = p->alpha * sum;
    *out = p->beta == 0.0f ? scaled : fmaf(p->beta, *out, scaled);
}

/* The lanes' sums of a tile's accumulators v[0..count), count <= 16, to out[0..count): each
 * the very tree lane_sum makes (so the very float), but 16 of them share each vector add:
 * level by level, two vectors' halves are shuffled into one and added. A product of short
 * rows (attention's q k^T, 64 terms: 4 steps) spent more on its sums, lane_sum's ~10 ops an
 * output, than on its products. AVX-512 only (where it was measured); elsewhere lane_sum. */
#if defined(__AVX512F__) && (defined(__clang__) || __GNUC__ >= 12)
#define JOINT_SUMS 1
static inline __attribute__((always_inline)) vec halves_added(vec a, vec b) {
    /* s8 of a in lanes 0-7, of b in 8-15: v[i] + v[i + 8] */
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(a, b, 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30,
                                   31);
}
static inline __attribute__((always_inline)) vec quarters_added(vec a, vec b) {
    /* s4 of four outputs: s8[i] + s8[i + 4] */
    return __builtin_shufflevector(a, b, 0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27) +
           __builtin_shufflevector(a, b, 4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30,
                                   31);
}
static inline __attribute__((always_inline)) vec pairs_added(vec a, vec b) {
    /* eight outputs' (s4[0] + s4[2], s4[1] + s4[3]) */
    return __builtin_shufflevector(a, b, 0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29) +
           __builtin_shufflevector(a, b, 2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30,
                                   31);
}
static inline __attribute__((always_inline)) vec last_added(vec a, vec b) {
    /* sixteen outputs' (s4[0] + s4[2]) + (s4[1] + s4[3]) */
    return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                   30) +
           __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29,
                                   31);
}
static inline __attribute__((always_inline)) void lane_sums(const vec *v, int count, float *out) {
    if (count <= 4) { /* too few to share the adds: a 1 x 4 tile measured ~9% slower */
        UNROLL for (int i = 0; i < count; i++) out[i] = lane_sum(v[i]);
        return;
    }
    vec s8[8], s4[4], s2[2];
    UNROLL for (int i = 0; i < 8; i++)
        s8[i] = 2 * i < count ? halves_added(v[2 * i], 2 * i + 1 < count ? v[2 * i + 1] : (vec){0})
                              : (vec){0};
    UNROLL for (int i = 0; i < 4; i++)
        s4[i] = 4 * i < count ? quarters_added(s8[2 * i], s8[2 * i + 1]) : (vec){0};
    UNROLL for (int i = 0; i < 2; i++)
        s2[i] = 8 * i < count ? pairs_added(s4[2 * i], s4[2 * i + 1]) : (vec){0};
    const vec all = last_added(s2[0], s2[1]);
    UNROLL for (int i = 0; i < 16; i++)
        if (i < count) out[i] = all[i];
}
#else
#define JOINT_SUMS 0
static inline __attribute__((always_inline)) void lane_sums(const vec *v, int count, float *out) {
    UNROLL for (int i = 0; i < 16; i++)
        if (i < count) out[i] = lane_sum(v[i]);
}
#endif

/* A loaded vector kept in a register for all its uses: in a 2 x 4 tile GCC 12 loaded each row
 * of B again for each row of A (16 loads for 8 FMAs: the tile took ~3x a 1 x 4's time), and
 * the quantized tiles loaded A again for each row of B. Only where a vec is one register
 * (AVX-512's): elsewhere the constraint cannot be met, and the source would not build. */
#if defined(__AVX512F__)
#define HELD(v) __asm__("" : "+v"(v))
#else
#define HELD(v) ((void)0)
#endif

/* B is N x K (x @ W.T): C[m][n] = dot(A[m], B[n]), over k in LANES-wide steps, then the lanes
 * summed in one tree, then the last k % LANES terms. Tiles of 2 rows of A x 4 rows of B (1 x 4,
 * 2 x 1, 1 x 1 at the edges) only interleave these chains; they never change one. */
#define DOT(MR, NR)                                                                               \
    static inline __attribute__((always_inline)) void dot_##MR##x##NR(const struct product *p,  \
                                                                      int m, int n) {           \
        const int k16 = p->k & ~(LANES - 1);                                                     \
        const float *a[MR];                                                                      \
        UNROLL for (int i = 0; i < MR; i++) a[i] = p->a + (long)(m + i) * p->lda;                \
        const float *b[4];                                                                       \
        UNROLL for (int j = 0; j < 4; j++)                                                       \
            b[j] = p->b + (long)(n - p->b_row + (j < NR ? j : 0)) * p->ldb;                      \
        vec acc[MR][NR];                                                                         \
        UNROLL for (int i = 0; i < MR; i++)                                                      \
            UNROLL for (int j = 0; j < NR; j++) acc[i][j] = (vec){0};                            \
        for (int k = 0; k < k16; k += LANES) {                                                   \
            vec x[MR], y[NR];                                                                    \
            UNROLL for (int i = 0; i < MR; i++) { x[i] = load(a[i] + k); HELD(x[i]); }              \
            UNROLL for (int j = 0; j < NR; j++) { y[j] = load(b[j] + k); HELD(y[j]); }              \
            if (!p->unpacked) /* the next rows of B: short rows defeat the prefetcher */         \
                UNROLL for (int j = 0; j < NR; j++)                                              \
                    __builtin_prefetch(b[j] + (long)PREFETCH_ROWS * p->ldb + k);                 \
            UNROLL for (int i = 0; i < MR; i++)                                                  \
                UNROLL for (int j = 0; j < NR; j++) acc[i][j] += x[i] * y[j];                    \
        }                                                                                        \
        float sums[MR * NR];                                                                     \
        lane_sums(&acc[0][0], MR * NR, sums);                                                    \
        UNROLL for (int i = 0; i < MR; i++)                                                      \
            UNROLL for (int j = 0; j < NR; j++) {                                                \
                float s = sums[i * NR + j];                                                      \
                for (int k = k16; k < p->k; k++) s += a[i][k] * b[j][k];                         \
                store(p, m + i, n + j, s);                                                       \
            }                                                                                    \
    }
DOT(4, 4)
DOT(3, 4)
DOT(2, 4)
DOT(1, 4)
DOT(2, 1)
DOT(1, 1)

/* ---- quantized shadows: the same chains, each tile of B unpacked from its quantized form ---- */

typedef unsigned char bytes16 __attribute__((vector_size(16)));
typedef int ints __attribute__((vector_size(LANES * 4)));
/* Bytes to floats through ints: GCC 12 makes one widening and one conversion of that, and 16
 * scalar conversions of a direct bytes-to-floats one. */
#define FLOATS(b) __builtin_convertvector(__builtin_convertvector(b, ints), vec)

/* x in every lane: one broadcast (x - 0 is x, -0 included: `(vec){0} + x` added a zero first,
 * making -0 +0; a loop over the lanes compiled to one masked broadcast per lane). */
static inline __attribute__((always_inline)) vec splat(float x) { return x - (vec){0}; }

/* 4-bit rows hold 32 weights in 16 bytes: byte j is q[j] | q[j + 16] << 4 (unpacked with one
 * mask and one shift); 8-bit rows one byte a weight. w = scale * q + bias, in float: the product
 * of a half-precision scale (GGUF's, mlx-lm's float16 and bfloat16) and a 4- or 8-bit q is
 * exact, so fused into one multiply-add (as -march=native may) or not, the one rounding is the
 * addition's, as in MLX's dequantize. With float32 scales MLX rounds twice and a fused one
 * differs: mlxd_gemv_shadow_add checks every weight with this very function and refuses such
 * a matrix. */
static inline __attribute__((always_inline)) vec dequant(bytes16 q, vec scale, vec bias) {
    return FLOATS(q) * scale + bias;
}

/* Loaded into a vector register: from memory GCC 12 widens the bytes one at a time. */
#if defined(__x86_64__) || defined(__i386__)
#define IN_REGISTER(v) __asm__("" : "+x"(v))
#elif defined(__aarch64__)
#define IN_REGISTER(v) __asm__("" : "+w"(v))
#else
#define IN_REGISTER(v) ((void)0)
#endif

static inline __attribute__((always_inline)) bytes16 load16(const unsigned char *p) {
    bytes16 q;
    memcpy(&q, p, sizeof q);
    IN_REGISTER(q);
    return q;
}

/* DOT's chains (x @ W.T, k in LANES-wide steps in order, one lane tree) on tiles unpacked group
 * by group: K is a multiple of the group, itself of 32 (4-bit) or 16 (8-bit): no last terms. */
#define DOTQ(BITS, MR, NR)                                                                        \
    static inline __attribute__((always_inline)) void dotq##BITS##_##MR##x##NR(                 \
        const struct product *p, int m, int n) {                                                 \
        const struct shadow *s = p->sh;                                                          \
        const int per = BITS == 4 ? 2 : 1; /* LANES-wide steps per 16 bytes */                   \
        const long row = (long)s->k * BITS / 8, groups = s->k / s->group;                        \
        const float *a[MR];                                                                      \
        UNROLL for (int i = 0; i < MR; i++) a[i] = p->a + (long)(m + i) * p->lda;                \
        const unsigned char *q[NR];                                                              \
        const float *scales[NR], *biases[NR];                                                    \
        UNROLL for (int j = 0; j < NR; j++) {                                                    \
            q[j] = s->q + (n + j) * row;                                                         \
            scales[j] = s->scales + (n + j) * groups, biases[j] = s->biases + (n + j) * groups;  \
        }                                                                                        \
        vec acc[MR][NR];                                                                         \
        UNROLL for (int i = 0; i < MR; i++)                                                      \
            UNROLL for (int j = 0; j < NR; j++) acc[i][j] = (vec){0};                            \
        int k = 0;                                                                               \
        for (long g = 0; g < groups; g++) {                                                      \
            vec scale[NR], bias[NR];                                                             \
            UNROLL for (int j = 0; j < NR; j++)                                                  \
                scale[j] = splat(scales[j][g]), bias[j] = splat(biases[j][g]);                   \
            for (int end = k + s->group; k < end; k += per * LANES) {                            \
                vec y[2][NR];                                                                    \
                UNROLL for (int j = 0; j < NR; j++) {                                            \
                    bytes16 b = load16(q[j] + (unsigned)k * BITS / 8);                           \
                    __builtin_prefetch(q[j] + PREFETCH_ROWS * row + (unsigned)k * BITS / 8);     \
                    if (BITS == 4) {                                                             \
                        y[0][j] = dequant(b & 15, scale[j], bias[j]);                            \
                        y[1][j] = dequant(b >> 4, scale[j], bias[j]);                            \
                    } else {                                                                     \
                        y[0][j] = dequant(b, scale[j], bias[j]);                                 \
                    }                                                                            \
                }                                                                                \
                UNROLL for (int h = 0; h < per; h++) {                                           \
                    vec x[MR];                                                                   \
                    UNROLL for (int i = 0; i < MR; i++) {                                        \
                        x[i] = load(a[i] + k + h * LANES);                                       \
                        HELD(x[i]);                                                              \
                    }                                                                            \
                    UNROLL for (int i = 0; i < MR; i++)                                          \
                        UNROLL for (int j = 0; j < NR; j++) acc[i][j] += x[i] * y[h][j];         \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        UNROLL for (int i = 0; i < MR; i++)                                                      \
            UNROLL for (int j = 0; j < NR; j++) store(p, m + i, n + j, lane_sum(acc[i][j]));     \
    }
DOTQ(4, 3, 4)
DOTQ(4, 2, 4)
DOTQ(4, 1, 4)
DOTQ(4, 2, 1)
DOTQ(4, 1, 1)
DOTQ(8, 3, 4)
DOTQ(8, 2, 4)
DOTQ(8, 1, 4)
DOTQ(8, 2, 1)
DOTQ(8, 1, 1)

#define PARTQ(BITS)                                                                               \
    static void partq##BITS(const struct product *p, int n0, int n1) {                         \
        int n = n0;                                                                              \
        for (; n + 4 <= n1; n += 4) {                                                            \
            int m = 0;                                                                           \
            if (p->rows == 3) { dotq##BITS##_3x4(p, m, n); continue; }                          \
            for (; m + 2 <= p->rows; m += 2) dotq##BITS##_2x4(p, m, n);                          \
            if (m < p->rows) dotq##BITS##_1x4(p, m, n);                                          \
        }                                                                                        \
        for (; n < n1; n++) {                                                                    \
            int m = 0;                                                                           \
            for (; m + 2 <= p->rows; m += 2) dotq##BITS##_2x1(p, m, n);                          \
            if (m < p->rows) dotq##BITS##_1x1(p, m, n);                                          \
        }                                                                                        \
    }
PARTQ(4)
PARTQ(8)

/* Row n of a shadow, unpacked into `out` (K floats): the float matrix's row. (Each vector
 * stored as it is made: an array of them went through the stack.) */
static inline __attribute__((always_inline)) void unpack_bits(const struct shadow *s, long n,
                                                              float *out, const int bits) {
    const long groups = s->k / s->group;
    const unsigned char *q = s->q + n * s->k * bits / 8;
    const float *scales = s->scales + n * groups, *biases = s->biases + n * groups;
    int k = 0;
    for (long g = 0; g < groups; g++) {
        const vec scale = splat(scales[g]), bias = splat(biases[g]);
        for (int end = k + s->group; k < end; k += bits == 4 ? 2 * LANES : LANES) {
            bytes16 b = load16(q + (unsigned)k * bits / 8);
            vec lo = dequant(bits == 4 ? b & 15 : b, scale, bias);
            memcpy(out + k, &lo, sizeof lo);
            if (bits == 4) {
                vec hi = dequant(b >> 4, scale, bias);
                memcpy(out + k + LANES, &hi, sizeof hi);
            }
        }
    }
}

static void unpack_row(const struct shadow *s, long n, float *out) {
    if (s->bits == 4)
        unpack_bits(s, n, out, 4);
    else
        unpack_bits(s, n, out, 8);
}

/* B is K x N (x @ B): C[m][n..n+LANES*V) accumulates A[m][k] * B[k][n..] over k in order; the
 * last N % LANES columns are the same chains, one column at a time. */
#define AXPY(V)                                                                                   \
    static inline __attribute__((always_inline)) void axpy_##V(const struct product *p, int m,  \
                                                               int n) {                         \
        const float *a = p->a + (long)m * p->lda;                                                \
        vec acc[V];                                                                              \
        for (int v = 0; v < V; v++) acc[v] = (vec){0};                                           \
        for (int k = 0; k < p->k; k++) {                                                         \
            const float *b = p->b + (long)k * p->ldb + n;                                        \
            for (int v = 0; v < V; v++) acc[v] += a[k] * load(b + v * LANES);                    \
        }                                                                                        \
        for (int v = 0; v < V; v++)                                                              \
            for (int i = 0; i < LANES; i++) store(p, m, n + v * LANES + i, acc[v][i]);           \
    }
AXPY(4)
AXPY(1)

/* x @ W.T on float rows of B, columns [n0, n1): tiles of 4 rows of A x 4 of B, then the edges. */
static void dot_tiles(const struct product *p, int n0, int n1) {
    int n = n0;
    for (; n + 4 <= n1; n += 4) {
        int m = 0;
        for (; m + 4 <= p->rows; m += 4) dot_4x4(p, m, n);
        if (m + 3 == p->rows) /* one pass over the 4 rows of B for the last 3 of A, not 2 */
            dot_3x4(p, m, n);
        else if (m + 2 <= p->rows)
            dot_2x4(p, m, n), m += 2;
        if (m + 1 == p->rows) dot_1x4(p, m, n);
    }
    for (; n < n1; n++) {
        int m = 0;
        for (; m + 2 <= p->rows; m += 2) dot_2x1(p, m, n);
        if (m < p->rows) dot_1x1(p, m, n);
    }
}

/* A product of more rows than SHADOW_ROWS on a shadow: each UNPACKED rows of B unpacked once,
 * into a buffer that stays in L1, and multiplied with every row of A by dot_tiles: the very
 * floats the matrix holds (so the very sums), read from the cache instead of from memory.
 * The buffer is on the stack up to rows of STACK_K weights (64 KB), else allocated. */
enum { UNPACKED = 4, STACK_K = 4096 };

static void part_unpacked(const struct product *p, int n0, int n1) {
    struct product f = *p;
    f.sh = NULL;
    float stack[p->k <= STACK_K ? UNPACKED * p->k : 1] __attribute__((aligned(64)));
    float *block = p->k <= STACK_K ? stack : malloc(sizeof(float) * UNPACKED * (size_t)p->k);
    if (block == NULL) { /* no memory for it: the float matrix itself, as without a shadow */
        dot_tiles(&f, n0, n1);
        return;
    }
    f.b = block, f.ldb = p->k, f.unpacked = 1;
    const long row = (long)p->k * p->sh->bits / 8; /* bytes of a quantized row */
    for (int n = n0; n < n1; n += UNPACKED) {
        int end = n + UNPACKED < n1 ? n + UNPACKED : n1;
        for (int j = n; j < end; j++) unpack_row(p->sh, j, block + (long)(j - n) * p->k);
        /* The next block's bytes, on their way while this one's sums are made. */
        if (end < n1)
            for (long at = 0; at < (n1 - end < UNPACKED ? n1 - end : UNPACKED) * row; at += 64)
                __builtin_prefetch(p->sh->q + end * row + at);
        f.b_row = n;
        dot_tiles(&f, n, end);
    }
    if (block != stack) free(block);
}

static void part(const struct product *p, int n0, int n1) {
    if (p->sh != NULL && p->rows > SHADOW_ROWS) {
        part_unpacked(p, n0, n1);
    } else if (p->sh != NULL) {
        (p->sh->bits == 4 ? partq4 : partq8)(p, n0, n1);
    } else if (p->trans_b == TRANS) {
        dot_tiles(p, n0, n1);
    } else {
        for (int m = 0; m < p->rows; m++) {
            int n = n0;
            for (; n + 4 * LANES <= n1; n += 4 * LANES) axpy_4(p, m, n);
            for (; n + LANES <= n1; n += LANES) axpy_1(p, m, n);
            for (; n < n1; n++) {
                const float *a = p->a + (long)m * p->lda;
                float s = 0.0f;
                for (int k = 0; k < p->k; k++) s += a[k] * p->b[(long)k * p->ldb + n];
                store(p, m, n, s);
            }
        }
    }
}

/* ---- threads: the caller takes the first share, workers the others ------------------------ */

enum { SPIN = 4000 }; /* ~0.1-0.2 ms of pause before a worker sleeps: a decode step's next call */
enum { THREADED_MIN = 1 << 17 }; /* n * k (floats of B) from which the product is split */

static struct {
    pthread_mutex_t busy; /* one product at a time; a second caller computes alone */
    int workers;          /* started so far (after a fork: none) */
    int started;
    unsigned born; /* gen when the workers were started: they wait for the next one */
    /* The product's fields, tagged with its generation: a worker left out of one product can
     * read them while the caller fills them in for the next (a seqlock, checked by `job`). */
    _Atomic unsigned job;
    const struct product *_Atomic p;
    _Atomic int parts;
    _Atomic unsigned gen; /* bumped per product: the workers' wake-up word */
    _Atomic int left;     /* workers' shares not done yet */
} pool = {.busy = PTHREAD_MUTEX_INITIALIZER};

static void share(const struct product *p, int parts, int i) {
    /* Split points on multiples of 64 columns: each column takes the same path whatever the
     * split (not needed for equal sums, which every path gives; it keeps vectors whole). */
    long step = ((long)p->n + parts - 1) / parts;
    step = (step + 63) & ~63L;
    long n0 = step * i, n1 = n0 + step < p->n ? n0 + step : p->n;
    if (n0 < n1) part(p, (int)n0, (int)n1);
}

static void *worker(void *arg) {
    int id = (int)(long)arg;
    unsigned seen = pool.born;
    int spin = SPIN;
    for (;;) {
        unsigned gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&pool.gen, memory_order_acquire)) == seen) {
            if (++spins < spin)
                relax();
            else
                syscall(SYS_futex, &pool.gen, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
        }
        seen = gen;
        unsigned job = atomic_load_explicit(&pool.job, memory_order_acquire);
        const struct product *p = atomic_load_explicit(&pool.p, memory_order_acquire);
        int parts = atomic_load_explicit(&pool.parts, memory_order_acquire);
        /* Fields of another generation (the next one's, half written): wait for its own
         * wake-up. A worker that takes part in `gen` never sees that: it ends only with it. */
        if (job != gen || atomic_load_explicit(&pool.job, memory_order_acquire) != gen) continue;
        /* Left out (OpenBLAS was given fewer threads: the cores are busy): sleep at once, do
         * not spin on a core others need. */
        spin = id < parts ? SPIN : 0;
        if (id >= parts) continue;
        share(p, parts, id);
        atomic_fetch_sub_explicit(&pool.left, 1, memory_order_release);
    }
    return NULL;
}

static void forget_workers(void) { /* in a fork's child: no workers, nothing running */
    pool.started = 0, pool.workers = 0;
    pool.busy = (pthread_mutex_t)PTHREAD_MUTEX_INITIALIZER; /* it may have been held */
}

static int threads_wanted(void) {
    cpu_set_t cpus;
    int n = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    int cap = env && *env ? atoi(env) : 0;
    if (cap > 0 && cap < n) n = cap;
    return n > MAX_WORKERS + 1 ? MAX_WORKERS + 1 : n < 1 ? 1 : n;
}

static void start_workers(void) {
    pool.started = 1;
    pool.born = atomic_load(&pool.gen);
    int want = threads_wanted() - 1;
    sigset_t all, old; /* signals go to the application's threads, never to ours */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 1; i <= want; i++) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        /* Ids 1..workers with no gap, whichever threads fail to start: product() counts on it. */
        if (pthread_create(&t, &attr, worker, (void *)(long)(pool.workers + 1)) == 0)
            pool.workers++;
        pthread_attr_destroy(&attr);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}

static void product(const struct product *p) {
    long size = (long)p->n * p->k; /* floats of B; on a shadow read as such, what its bytes */
    if (p->sh != NULL && p->rows <= SHADOW_ROWS) /* are worth: a wake-up costs more than */
        size = size * p->sh->bits / 32;          /* it saves */
    if (size < THREADED_MIN || pthread_mutex_trylock(&pool.busy) != 0) {
        part(p, 0, p->n);
        return;
    }
    if (!pool.started) start_workers();
    /* One thread fewer than OpenBLAS is given now (mlxd/models/blas_threads.py lowers it when
     * other processes take the cores: a descheduled thread would stall every product): one
     * core is left to the thread that builds the next layer's graph while MLX computes this
     * one (mlxd/models/prefill_math.py's start). On 2 cores no worker: without one, passes
     * 900 tokens deep measured 1 token 30.3 -> 26.7 ms, 4 tokens 52.6 -> 48.6, 8 74.0 -> 69.0. */
    int workers = pool.workers, blas = next_get_threads ? next_get_threads() : workers + 2;
    if (blas - 2 < workers) workers = blas > 2 ? blas - 2 : 0;
    if (workers == 0) {
        part(p, 0, p->n);
    } else {
        unsigned next = atomic_load_explicit(&pool.gen, memory_order_relaxed) + 1;
        atomic_store_explicit(&pool.job, next, memory_order_relaxed); /* before the fields */
        atomic_store_explicit(&pool.p, p, memory_order_release);
        atomic_store_explicit(&pool.parts, workers + 1, memory_order_release);
        atomic_store_explicit(&pool.left, workers, memory_order_relaxed);
        atomic_fetch_add_explicit(&pool.gen, 1, memory_order_release);
        /* All: a wake-up that went to a worker left out would leave one taking part asleep. */
        syscall(SYS_futex, &pool.gen, FUTEX_WAKE_PRIVATE, pool.workers, NULL, NULL, 0);
        share(p, workers + 1, 0);
        while (atomic_load_explicit(&pool.left, memory_order_acquire) > 0) relax();
    }
    pthread_mutex_unlock(&pool.busy);
}

/* ---- the shadow registry: open addressing on B's address, lock-free to read ----------------- */

enum { SHADOWS = 4096 }; /* slots (a power of two); a model has a few hundred matrices */
#define GONE ((const float *)1) /* a removed entry: probing goes on past it */

static struct shadow shadows[SHADOWS];
static pthread_mutex_t shadows_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic int shadows_live;   /* entries: 0 = nothing to look up */
static int shadows_taken;          /* slots not free (entries and removed ones): probes end */

/* The number of products computed from a quantized shadow so far (read by tests). */
long mlxd_gemv_shadowed = 0;

static unsigned slot_of(const float *b) {
    return (unsigned)(((unsigned long)b >> 4) * 0x9E3779B97F4A7C15ul >> 40) & (SHADOWS - 1);
}

/* The slot whose key is `b`, or -1. */
static int slot_with(const float *b) {
    for (unsigned i = slot_of(b), tries = 0; tries < SHADOWS; i = (i + 1) & (SHADOWS - 1), tries++) {
        const float *key = atomic_load(&shadows[i].b);
        if (key == NULL) return -1;
        if (key == b) return (int)i;
    }
    return -1;
}

/* The shadow registered for B (N x K, row-major, leading dimension K), pinned (its `users`
 * counted: shadow_unpin when the product is done), or NULL. Pinned first and its key read
 * again after: mlxd_gemv_shadow_remove marks the key first and then waits for no users, so
 * either the removal waits for this product or this product does not take the shadow. */
static struct shadow *shadow_pin(const float *b, int n, int k, int ldb) {
    if (atomic_load_explicit(&shadows_live, memory_order_acquire) == 0) return NULL;
    int i = slot_with(b);
    if (i < 0) return NULL;
    struct shadow *s = &shadows[i];
    atomic_fetch_add(&s->users, 1);
    if (atomic_load(&s->b) == b && s->n == n && s->k == k && ldb == k) return s;
    atomic_fetch_sub(&s->users, 1);
    return NULL;
}

static void shadow_unpin(struct shadow *s) { atomic_fetch_sub(&s->users, 1); }

/* Whether every weight of `s` unpacks to the float matrix's own bits (the check that makes a
 * shadow's products bit-identical to the float ones). */
static int unpacks_exactly(const struct shadow *s) {
    float *row = malloc(sizeof(float) * s->k);
    int same = row != NULL;
    for (long n = 0; same && n < s->n; n++) {
        unpack_row(s, n, row);
        same = !memcmp(row, s->b + n * s->k, sizeof(float) * s->k);
    }
    free(row);
    return same;
}

/* Register `q`, `scales`, `biases` (layouts at struct shadow; the caller keeps them and `b`
 * alive until mlxd_gemv_shadow_remove(b)) as the quantized form of the float matrix `b`
 * (n x k, row-major). 1 when registered; 0 when the form is not one this file reads (bits 4
 * with groups of a multiple of 32, bits 8 with a multiple of 16), a weight does not unpack to
 * b's exact float, `b` is registered already, or the registry is full. */
int mlxd_gemv_shadow_add(const float *b, int n, int k, int bits, int group,
                         const unsigned char *q, const float *scales, const float *biases) {
    int unit = bits == 4 ? 2 * LANES : bits == 8 ? LANES : 0;
    if (!b || b == GONE || n <= 0 || unit == 0 || group <= 0 || group % unit || k % group)
        return 0;
    struct shadow s = {.n = n, .k = k, .bits = bits, .group = group, .q = q,
                       .scales = scales, .biases = biases};
    s.b = b;
    if (!unpacks_exactly(&s)) return 0;
    int done = 0;
    pthread_mutex_lock(&shadows_lock);
    unsigned i = slot_of(b); /* the first free or removed slot on b's probe path */
    const float *key;
    while ((key = atomic_load(&shadows[i].b)) != NULL && key != GONE) i = (i + 1) & (SHADOWS - 1);
    /* One entry per matrix, whatever the shape; a removed slot is taken again, a free one only
     * while probes stay short. */
    if (slot_with(b) < 0 && (key == GONE || shadows_taken < SHADOWS * 3 / 4)) {
        shadows_taken += key == NULL;
        shadows[i].n = n, shadows[i].k = k, shadows[i].bits = bits, shadows[i].group = group;
        shadows[i].q = q, shadows[i].scales = scales, shadows[i].biases = biases;
        atomic_store_explicit(&shadows[i].b, b, memory_order_release); /* fields first */
        atomic_fetch_add(&shadows_live, 1);
        done = 1;
    }
    pthread_mutex_unlock(&shadows_lock);
    return done;
}

/* Forget the shadow of `b` (1 if there was one): from now on its products read `b` itself.
 * Returns once no product reads the shadow any more (a product already running on MLX's
 * stream thread when the model is dropped): then its arrays may be freed. */
int mlxd_gemv_shadow_remove(const float *b) {
    pthread_mutex_lock(&shadows_lock);
    int i = slot_with(b);
    if (i >= 0) {
        atomic_store(&shadows[i].b, GONE);
        atomic_fetch_sub(&shadows_live, 1);
        while (atomic_load(&shadows[i].users) > 0) sched_yield();
        /* Removed slots just before a free one end no probe path: free them too, or matrices
         * that come and go at new addresses fill the table with removed slots. (A lookup that
         * was passing through one stops there: it takes the floats, which are right.) */
        unsigned j = (unsigned)i;
        while (atomic_load(&shadows[j].b) == GONE
               && atomic_load(&shadows[(j + 1) & (SHADOWS - 1)].b) == NULL) {
            atomic_store(&shadows[j].b, NULL);
            shadows_taken--;
            j = (j - 1) & (SHADOWS - 1);
        }
    }
    pthread_mutex_unlock(&shadows_lock);
    return i >= 0;
}

/* ---- attention for decode steps and verify passes (mlxd/models/attention.py) --------------- */

/* e^x for x <= 0 (a score minus its row's maximum), in every lane: x = n ln2 + r (Cody-Waite),
 * e^r by a degree-6 polynomial (|r| <= ln2/2, relative error ~2e-7), 2^n built in the exponent.
 * Below -87 it is 0. The same instructions for every lane and every call: a score's weight
 * depends on the score alone, not on the row's length or its place in the vector. */
static inline __attribute__((always_inline)) vec exp_nonpositive(vec x) {
    const vec lo = splat(-87.0f);
    const ints under = x < lo;
    x = (vec)(((ints)x & ~under) | ((ints)lo & under));
    const vec magic = splat(12582912.0f); /* 1.5 * 2^23: adding it rounds to an integer */
    vec n = (x * splat(1.44269504088896341f) + magic) - magic;
    vec r = x - n * splat(0.693359375f);
    r = r - n * splat(-2.12194440e-4f);
    vec p = splat(1.9875691500e-4f);
    p = p * r + splat(1.3981999507e-3f);
    p = p * r + splat(8.3334519073e-3f);
    p = p * r + splat(4.1665795894e-2f);
    p = p * r + splat(1.6666665459e-1f);
    p = p * r + splat(5.0000001201e-1f);
    p = p * r * r + r + splat(1.0f);
    const ints bits = (__builtin_convertvector(n, ints) + 127) << 23;
    return (vec)((ints)(p * (vec)bits) & ~under);
}

static inline __attribute__((always_inline)) float max16(vec v) {
    float m = v[0];
    for (int t = 1; t < LANES; t++) m = v[t] > m ? v[t] : m;
    return m;
}

/* The number of softmax products computed so far (read by tests through ctypes). */
long mlxd_softmax_products = 0;

/* C's element: the sum, plus beta times what C held (BLAS's rule: beta 0 never reads C). */
static inline __attribute__((always_inline)) void sums_out(float *row, long at, float sum,
                                                         float beta) {
    row[at] = beta == 0.0f ? sum : fmaf(beta, row[at], sum);
}

/* Keys [j, j + LANES) of a row of scores (`step` floats apart); lanes past k are -inf. */
static inline __attribute__((always_inline)) vec scores_at(const float *row, long step, int j,
                                                         int k) {
    if (step == 1 && j + LANES <= k) return load(row + j);
    vec x = splat(-INFINITY);
    for (int t = 0; t < LANES && j + t < k; t++) x[t] = row[(j + t) * step];
    return x;
}

/* A product's strides in floats whatever its CBLAS layout: A's (row, k), B's (k, column), C's
 * (row, column). */
struct strides {
    long a_r, a_k, b_k, b_col, c_r, c_col;
};
static inline struct strides strides_of(int order, int trans_a, int trans_b, int lda, int ldb,
                                        int ldc) {
    const int row_major = order == ROW_MAJOR;
    const long a_r = (row_major != (trans_a == TRANS)) ? lda : 1;
    const long b_k = (row_major != (trans_b == TRANS)) ? ldb : 1;
    return (struct strides){a_r,  a_r == 1 ? lda : 1,      b_k, b_k == 1 ? ldb : 1,
                            row_major ? ldc : 1, row_major ? 1 : ldc};
}

/* A row's top score and the inverse of the sum of its weights exp(score - top). */
static inline __attribute__((always_inline)) float row_scale(const float *ar, long step, int k,
                                                            vec *top) {
    vec peak = splat(-INFINITY);
    for (int j = 0; j < k; j += LANES) {
        const vec sc = scores_at(ar, step, j, k);
        const ints higher = peak > sc;
        peak = (vec)(((ints)peak & higher) | ((ints)sc & ~higher));
    }
    *top = splat(max16(peak));
    vec total = (vec){0};
    for (int j = 0; j < k; j += LANES) total += exp_nonpositive(scores_at(ar, step, j, k) - *top);
    return k > 0 ? 1.0f / lane_sum(total) : 0.0f;
}

/* R rows of C = softmax(A) B with B's and C's N = V * LANES columns contiguous: each key's row
 * of B is loaded once for the R rows (a KV head's query heads share their keys). A row's sums
 * are the same operations in the same order whatever R. */
#define SOFTMAX_ROWS(R, V)                                                                        \
    static inline __attribute__((always_inline)) void softmax_##R##x##V(                        \
        const struct strides *st, const float *a, const float *b, float *c, const int *ks,       \
        float beta) {                                                                            \
        vec top[R], acc[R][V];                                                                   \
        float inv[R];                                                                            \
        int k = 0; /* the most keys a row sees: the others' weights past theirs are 0 */         \
        UNROLL for (int i = 0; i < R; i++) {                                                     \
            inv[i] = row_scale(a + i * st->a_r, st->a_k, ks[i], &top[i]);                        \
            UNROLL for (int d = 0; d < V; d++) acc[i][d] = (vec){0};                             \
            k = ks[i] > k ? ks[i] : k;                                                           \
        }                                                                                        \
        for (int j = 0; j < k; j += LANES) {                                                     \
            vec e[R];                                                                            \
            UNROLL for (int i = 0; i < R; i++)                                                   \
                e[i] = exp_nonpositive(scores_at(a + i * st->a_r, st->a_k, j, ks[i]) - top[i]);  \
            for (int t = 0; t < LANES && j + t < k; t++) {                                       \
                const float *bj = b + (j + t) * st->b_k;                                         \
                vec v[V];                                                                        \
                UNROLL for (int d = 0; d < V; d++) v[d] = load(bj + d * LANES);                  \
                UNROLL for (int i = 0; i < R; i++) {                                             \
                    if (j + t >= ks[i]) continue; /* not its key: 0 x an inf value is NaN */     \
                    const vec p = splat(e[i][t] * inv[i]);                                       \
                    UNROLL for (int d = 0; d < V; d++) acc[i][d] += p * v[d];                    \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        UNROLL for (int i = 0; i < R; i++)                                                       \
            UNROLL for (int d = 0; d < V; d++)                                                   \
                UNROLL for (int t = 0; t < LANES; t++)                                           \
                    sums_out(c + i * st->c_r, d * LANES + t, acc[i][d][t], beta);                \
    }
SOFTMAX_ROWS(4, 4)
SOFTMAX_ROWS(1, 4)
/* Heads of 64 go 4 rows at a time where 16 accumulators of 16 floats fit in registers
 * (AVX-512's 32); AVX2's and NEON's are a half and a quarter as wide (the tile spilled): there,
 * one row at a time, as for other widths. */
#if defined(__AVX512F__)
enum { SOFTMAX_TILE = 4 };
#else
enum { SOFTMAX_TILE = 1 };
#endif

/* C = softmax(A) B (+ beta C), A's rows each a query's scores over the K keys (masked ones at
 * the lowest float, as MLX masks them), B the values (K x N): the last matmul of attention,
 * asked for by mlxd/models/attention.py with alpha SOFTMAX_ALPHA (no model's addmm uses it;
 * any layout is taken here, so such a call never reaches OpenBLAS). Per row: its top score,
 * the weights w = exp(score - top) in LANES-wide steps and their sum, then C's row = the sum
 * over the keys in order of (w / sum) * B's row. A row's result depends on that row alone,
 * and a verify pass's rows are its decode steps' (their extra keys, masked, add 0). MLX's CPU
 * softmax is scalar, ~30 ns a score: this is ~1 ns. Heads of 64 (the embedded model's) go
 * SOFTMAX_TILE rows at a time: attention.py puts a KV head's query heads in one product. */
static void softmax_product(int order, int trans_a, int trans_b, int m, int n, int keys,
                            const float *a, int lda, const float *b, int ldb, float beta,
                            float *c, int ldc, int causal_rows) {
    const struct strides st = strides_of(order, trans_a, trans_b, lda, ldb, ldc);
    const int vecs = n / LANES;
    const int vector_cols =
        n % LANES == 0 && vecs <= MAX_DIM / LANES && st.b_col == 1 && st.c_col == 1;
    /* Each row's keys: all, or under the causal mask (CAUSAL_SOFTMAX_ALPHA) its own. */
    int ks[MAX_ROWS];
    for (int i = 0; i < m && i < MAX_ROWS; i++)
        ks[i] = causal_rows > 0 ? keys - causal_rows + 1 + i % causal_rows : keys;
    int r = 0;
    if (SOFTMAX_TILE == 4 && vector_cols && vecs == 4 && m <= MAX_ROWS) {
        for (; r + 4 <= m; r += 4) softmax_4x4(&st, a + r * st.a_r, b, c + r * st.c_r, ks + r, beta);
        for (; r < m; r++) softmax_1x4(&st, a + r * st.a_r, b, c + r * st.c_r, ks + r, beta);
    }
    for (; r < m; r++) {
        const float *ar = a + r * st.a_r;
        float *cr = c + r * st.c_r;
        const int k = causal_rows > 0 ? keys - causal_rows + 1 + r % causal_rows : keys;
        vec top;
        const float inv = row_scale(ar, st.a_k, k, &top);
        vec acc[MAX_DIM / LANES];
        for (int d = 0; vector_cols && d < vecs; d++) acc[d] = (vec){0}; /* wider: `sums` */
        float *sums = vector_cols ? NULL : calloc((size_t)n, sizeof(float));
        for (int j = 0; j < k; j += LANES) {
            const vec e = exp_nonpositive(scores_at(ar, st.a_k, j, k) - top);
            for (int t = 0; t < LANES && j + t < k; t++) {
                const float *bj = b + (j + t) * st.b_k;
                const float p = e[t] * inv;
                if (vector_cols)
                    for (int d = 0; d < vecs; d++) acc[d] += splat(p) * load(bj + d * LANES);
                else if (sums != NULL)
                    for (int col = 0; col < n; col++) sums[col] += p * bj[col * st.b_col];
            }
        }
        if (vector_cols)
            for (int d = 0; d < vecs; d++)
                for (int t = 0; t < LANES; t++)
                    sums_out(cr, (d * LANES + t) * st.c_col, acc[d][t], beta);
        else
            for (int col = 0; col < n; col++)
                sums_out(cr, col * st.c_col, sums != NULL ? sums[col] : NAN, beta);
        free(sums);
    }
    __atomic_add_fetch(&mlxd_softmax_products, 1, __ATOMIC_RELAXED);
}

/* The number of SwiGLU products computed so far (read by tests through ctypes). */
long mlxd_swiglu_products = 0;

/* silu(g) = g sigmoid(g), sigmoid from e = e^-|g| (never above 1): 1 / (1 + e) for g >= 0,
 * e / (1 + e) below. Lane by lane, so an element's value does not depend on its neighbours. */
static inline __attribute__((always_inline)) vec silu(vec g) {
    const ints negative = g < (vec){0};
    const vec e = exp_nonpositive((vec)((ints)g | (ints)splat(-0.0f)));
    const vec top = (vec)(((ints)e & negative) | ((ints)splat(1.0f) & ~negative));
    return g * (top / (1.0f + e));
}

/* C = silu(A B) * (beta C), element by element: mlxd/models/activation.py's swiglu asks for it
 * with A the gate (M x 1), B [[1]] and C the up projection (M x 1), beta 1 (every product
 * there is exact: silu(gate) * up). Any other shape or layout is taken too (one dot product an
 * element), so such a call never reaches OpenBLAS. Each element alone, on the lanes of one
 * vector (the last ones padded): a verify pass's rows are its decode steps'. */
static void swiglu_product(int order, int trans_a, int trans_b, int m, int n, int k,
                           const float *a, int lda, const float *b, int ldb, float beta,
                           float *c, int ldc) {
    const struct strides st = strides_of(order, trans_a, trans_b, lda, ldb, ldc);
    if (n == 1 && k == 1 && st.a_r == 1 && st.c_r == 1 && b[0] == 1.0f && beta == 1.0f) {
        for (int i = 0; i < m; i += LANES) { /* the daemon's call: one pass, LANES at a time */
            vec g = (vec){0}, up = (vec){0};
            const int lanes = m - i < LANES ? m - i : LANES;
            memcpy(&g, a + i, sizeof(float) * lanes), memcpy(&up, c + i, sizeof(float) * lanes);
            const vec out = silu(g) * up;
            memcpy(c + i, &out, sizeof(float) * lanes);
        }
    } else {
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                float dot = 0.0f;
                for (int t = 0; t < k; t++)
                    dot += a[i * st.a_r + t * st.a_k] * b[t * st.b_k + j * st.b_col];
                float *out = c + i * st.c_r + j * st.c_col;
                const float up = beta == 0.0f ? 0.0f : beta * *out;
                *out = silu(splat(dot))[0] * up;
            }
    }
    __atomic_add_fetch(&mlxd_swiglu_products, 1, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void find_next(void) {
    next_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
    next_get_threads = (int (*)(void))dlsym(RTLD_NEXT, "openblas_get_num_threads");
    pthread_atfork(NULL, NULL, forget_workers);
}

void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c,
                 int ldc) {
    if (alpha == SOFTMAX_ALPHA) {
        if (m > 0 && n > 0) /* (no keys: a softmax over nothing weighs nothing, C = beta C) */
            softmax_product(order, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc, 0);
        return;
    }
    if (alpha == CAUSAL_SOFTMAX_ALPHA) {
        const int rows = (int)beta; /* 1..k query rows a group: each row sees a key at least */
        if (m <= 0 || n <= 0) return;
        if (rows >= 1 && rows <= k && (float)rows == beta) {
            softmax_product(order, trans_a, trans_b, m, n, k, a, lda, b, ldb, 0.0f, c, ldc, rows);
            return;
        }
        /* Not a product attention.py asks for: C = NaN, never a silent wrong softmax. */
        const long c_r = order == ROW_MAJOR ? ldc : 1, c_col = order == ROW_MAJOR ? 1 : ldc;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) c[i * c_r + j * c_col] = NAN;
        return;
    }
    if (alpha == SWIGLU_ALPHA) {
        if (m > 0 && n > 0)
            swiglu_product(order, trans_a, trans_b, m, n, k, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* alpha == 0: C = beta C without reading A or B (NaN there must not show): OpenBLAS's. */
    if (order == ROW_MAJOR && trans_a == NO_TRANS && (trans_b == NO_TRANS || trans_b == TRANS)
        && m > 0 && m <= MAX_ROWS && n > 0 && k > 0 && alpha != 0.0f) {
        struct shadow *sh = trans_b == TRANS ? shadow_pin(b, n, k, ldb) : NULL;
        struct product p = {m, n, k, trans_b, alpha, beta, a, b, c, lda, ldb, ldc, sh, 0, 0};
        product(&p);
        if (sh != NULL) {
            shadow_unpin(sh);
            __atomic_add_fetch(&mlxd_gemv_shadowed, 1, __ATOMIC_RELAXED);
        }
        __atomic_add_fetch(&mlxd_gemv_forwarded, 1, __ATOMIC_RELAXED);
        return;
    }
    next_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
