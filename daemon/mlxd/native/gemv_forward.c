/* mlxd: OpenBLAS's GEMM -> GEMV forwarding, for OpenBLAS builds without it.
 *
 * Preloaded before OpenBLAS (LD_PRELOAD=this:libopenblas.so.0), this cblas_sgemm takes the
 * calls MLX's CPU backend makes. A product with one row, C(1xN) = x(1xK) op(B) (a decode step:
 * one token times every weight matrix), goes to OpenBLAS's cblas_sgemv, which streams B once;
 * OpenBLAS's sgemm packs all of B first for that single row. Every other call goes to
 * OpenBLAS's cblas_sgemm unchanged. OpenBLAS does the same itself when built with
 * GEMM_GEMV_FORWARD. See mlxd/gemv_forward.py for the measurements and how this is built.
 */
#define _GNU_SOURCE
#include <dlfcn.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111, TRANS = 112 }; /* CBLAS_ORDER, CBLAS_TRANSPOSE */

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *,
                         int, float, float *, int);
typedef void (*sgemv_fn)(int, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int);

static sgemm_fn next_sgemm;
static sgemv_fn next_sgemv;

__attribute__((constructor)) static void find_next(void) {
    next_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
    next_sgemv = (sgemv_fn)dlsym(RTLD_NEXT, "cblas_sgemv");
}

/* The number of calls forwarded so far (read by tests through ctypes). */
long mlxd_gemv_forwarded = 0;

void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c,
                 int ldc) {
    if (order == ROW_MAJOR && m == 1 && n > 0 && k > 0 && next_sgemv) {
        /* x is row 0 of op(A): contiguous if A is 1xK, one column of a Kx1 A otherwise. */
        int incx = trans_a == NO_TRANS ? 1 : lda;
        if (trans_b == NO_TRANS) /* B is K x N: y = B^T x */
            next_sgemv(ROW_MAJOR, TRANS, k, n, alpha, b, ldb, a, incx, beta, c, 1);
        else /* B is N x K (a weight matrix, as MLX multiplies x @ W.T): y = B x */
            next_sgemv(ROW_MAJOR, NO_TRANS, n, k, alpha, b, ldb, a, incx, beta, c, 1);
        __atomic_add_fetch(&mlxd_gemv_forwarded, 1, __ATOMIC_RELAXED);
        return;
    }
    next_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
