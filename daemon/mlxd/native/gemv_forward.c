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
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <linux/futex.h>
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

struct product {
    int rows, n, k, trans_b;
    float alpha, beta;
    const float *a, *b;
    float *c;
    int lda, ldb, ldc;
};

static inline __attribute__((always_inline)) vec load(const float *p) {
    vec v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline __attribute__((always_inline)) float lane_sum(vec v) {
    float s8[8], s4[4], s2[2];
    for (int i = 0; i < 8; i++) s8[i] = v[i] + v[i + 8];
    for (int i = 0; i < 4; i++) s4[i] = s8[i] + s8[i + 4];
    for (int i = 0; i < 2; i++) s2[i] = s4[i] + s4[i + 2];
    return s2[0] + s2[1];
}

static inline __attribute__((always_inline)) void store(const struct product *p, int m, int n,
                                                          float sum) {
    float *out = p->c + (long)m * p->ldc + n;
    *out = p->beta == 0.0f ? p->alpha * sum : p->alpha * sum + p->beta * *out;
}

/* B is N x K (x @ W.T): C[m][n] = dot(A[m], B[n]), over k in LANES-wide steps, then the lanes
 * summed in one tree, then the last k % LANES terms. Tiles of 2 rows of A x 4 rows of B (1 x 4,
 * 2 x 1, 1 x 1 at the edges) only interleave these chains; they never change one. */
#define DOT(MR, NR)                                                                               \
    static inline __attribute__((always_inline)) void dot_##MR##x##NR(const struct product *p,  \
                                                                      int m, int n) {           \
        const int k16 = p->k & ~(LANES - 1);                                                     \
        const float *a[2] = {p->a + (long)m * p->lda, p->a + (long)(m + MR - 1) * p->lda};       \
        const float *b[4];                                                                       \
        for (int j = 0; j < 4; j++) b[j] = p->b + (long)(n + (j < NR ? j : 0)) * p->ldb;         \
        vec acc[MR][NR];                                                                         \
        for (int i = 0; i < MR; i++)                                                             \
            for (int j = 0; j < NR; j++) acc[i][j] = (vec){0};                                   \
        for (int k = 0; k < k16; k += LANES) {                                                   \
            vec x[MR], y[NR];                                                                    \
            for (int i = 0; i < MR; i++) x[i] = load(a[i] + k);                                  \
            for (int j = 0; j < NR; j++) y[j] = load(b[j] + k);                                  \
            for (int j = 0; j < NR; j++) /* the next rows of B: short rows defeat the prefetcher */\
                __builtin_prefetch(b[j] + (long)PREFETCH_ROWS * p->ldb + k);                     \
            for (int i = 0; i < MR; i++)                                                         \
                for (int j = 0; j < NR; j++) acc[i][j] += x[i] * y[j];                           \
        }                                                                                        \
        for (int i = 0; i < MR; i++)                                                             \
            for (int j = 0; j < NR; j++) {                                                       \
                float s = lane_sum(acc[i][j]);                                                   \
                for (int k = k16; k < p->k; k++) s += a[i][k] * b[j][k];                         \
                store(p, m + i, n + j, s);                                                       \
            }                                                                                    \
    }
DOT(2, 4)
DOT(1, 4)
DOT(2, 1)
DOT(1, 1)

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

static void part(const struct product *p, int n0, int n1) {
    if (p->trans_b == TRANS) {
        int n = n0;
        for (; n + 4 <= n1; n += 4) {
            int m = 0;
            for (; m + 2 <= p->rows; m += 2) dot_2x4(p, m, n);
            if (m < p->rows) dot_1x4(p, m, n);
        }
        for (; n < n1; n++) {
            int m = 0;
            for (; m + 2 <= p->rows; m += 2) dot_2x1(p, m, n);
            if (m < p->rows) dot_1x1(p, m, n);
        }
        return;
    }
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
    if ((long)p->n * p->k < THREADED_MIN || pthread_mutex_trylock(&pool.busy) != 0) {
        part(p, 0, p->n);
        return;
    }
    if (!pool.started) start_workers();
    /* As many threads as OpenBLAS is given now (mlxd/models/blas_threads.py lowers it when
     * other processes take the cores: a descheduled thread would stall every product). */
    int workers = pool.workers, blas = next_get_threads ? next_get_threads() : workers + 1;
    if (blas - 1 < workers) workers = blas > 1 ? blas - 1 : 0;
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

__attribute__((constructor)) static void find_next(void) {
    next_sgemm = (sgemm_fn)dlsym(RTLD_NEXT, "cblas_sgemm");
    next_get_threads = (int (*)(void))dlsym(RTLD_NEXT, "openblas_get_num_threads");
    pthread_atfork(NULL, NULL, forget_workers);
}

void cblas_sgemm(int order, int trans_a, int trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta, float *c,
                 int ldc) {
    /* alpha == 0: C = beta C without reading A or B (NaN there must not show): OpenBLAS's. */
    if (order == ROW_MAJOR && trans_a == NO_TRANS && (trans_b == NO_TRANS || trans_b == TRANS)
        && m > 0 && m <= MAX_ROWS && n > 0 && k > 0 && alpha != 0.0f) {
        struct product p = {m, n, k, trans_b, alpha, beta, a, b, c, lda, ldb, ldc};
        product(&p);
        __atomic_add_fetch(&mlxd_gemv_forwarded, 1, __ATOMIC_RELAXED);
        return;
    }
    next_sgemm(order, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}
