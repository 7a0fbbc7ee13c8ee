/* One-pass gradient kernels for lepton_hpc (plain C, called through ctypes).
 *
 * Each row is read once: its residual and its contribution to Xᵀr are formed
 * while the row is in L1, so a chunk streams from memory exactly once. Rows
 * are visited in order and every sum is accumulated sequentially, so a
 * chunk's partial has the same bits wherever it is computed. Built without
 * -ffast-math and without FMA contraction so the order is the one written.
 */
#include <math.h>
#include <stddef.h>

/* Wider SIMD where the CPU has it, chosen at run time. Without FMA
 * contraction every variant computes the same operations in the same order,
 * so the bits do not depend on which one runs. */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* x·w with 8 independent partial sums (lanes j mod 8) combined in a fixed
 * order: the same bits every time, and short dependency chains that the
 * compiler can keep in SIMD registers without reassociating anything. */
#if defined(__GNUC__)
#define PREFETCH(p) __builtin_prefetch((p), 0, 0)
#else
#define PREFETCH(p) ((void)0)
#endif
#ifndef PREFETCH_ROWS
#define PREFETCH_ROWS 16
#endif

static inline double dot8(const double *restrict x, const double *restrict w, long d)
{
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    long j = 0;
    for (; j + 8 <= d; j += 8)
        for (int k = 0; k < 8; ++k) a[k] += x[j + k] * w[j + k];
    double tail = 0.0;
    for (; j < d; ++j) tail += x[j] * w[j];
    return (((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]))) + tail;
}

/* dot8 of four rows at once: each row's eight lanes take exactly dot8's operations in
 * dot8's order (so the same bits), but the four rows' chains are interleaved, which keeps
 * more independent work in flight than four dot8 calls one after the other. */
static inline void dot8x4(const double *restrict x0, const double *restrict x1, const double *restrict x2,
                          const double *restrict x3, const double *restrict w, long d, double out[4])
{
    double a0[8] = {0}, a1[8] = {0}, a2[8] = {0}, a3[8] = {0};
    long j = 0;
    for (; j + 8 <= d; j += 8)
        for (int k = 0; k < 8; ++k) {
            double wk = w[j + k];
            a0[k] += x0[j + k] * wk;
            a1[k] += x1[j + k] * wk;
            a2[k] += x2[j + k] * wk;
            a3[k] += x3[j + k] * wk;
        }
    double t0 = 0.0, t1 = 0.0, t2 = 0.0, t3 = 0.0;
    for (; j < d; ++j) {
        t0 += x0[j] * w[j];
        t1 += x1[j] * w[j];
        t2 += x2[j] * w[j];
        t3 += x3[j] * w[j];
    }
#define LANES(a) ((((a)[0] + (a)[4]) + ((a)[1] + (a)[5])) + (((a)[2] + (a)[6]) + ((a)[3] + (a)[7])))
    out[0] = LANES(a0) + t0;
    out[1] = LANES(a1) + t1;
    out[2] = LANES(a2) + t2;
    out[3] = LANES(a3) + t3;
#undef LANES
}

/* Least squares on float64 rows: out = [Σ s r x (d), Σ s r, ½ Σ s r², Σ s]
 * with r = x·w + b − y; sw may be NULL (all weights 1). */
CLONES void lepton_linear_partial(const double *restrict X, const double *restrict y,
                                  const double *restrict sw, const double *restrict w, double b,
                                  long n, long d, double *restrict out)
{
    double *g = out;
    double sum_r = 0.0, loss = 0.0, wsum = 0.0;
    for (long j = 0; j < d; ++j) g[j] = 0.0;
    long i = 0;
    /* Four rows per pass over g: each g[j] still receives the rows' terms one
     * after the other, in row order (the same bits as one row at a time), but
     * g stays in registers across the four updates. */
    for (; i + 4 <= n; i += 4) {
        const double *x0 = X + (size_t)i * (size_t)d, *x1 = x0 + d, *x2 = x1 + d, *x3 = x2 + d;
        /* ask for the rows two blocks ahead while these four are worked on */
        for (long off = 0; off < 4 * d; off += 8) PREFETCH(x0 + PREFETCH_ROWS * d + off);
        double r[4];
        dot8x4(x0, x1, x2, x3, w, d, r);
        for (int k = 0; k < 4; ++k) r[k] = r[k] + b - y[i + k];
        double sr[4];
        for (int k = 0; k < 4; ++k) {
            double s = sw ? sw[i + k] : 1.0;
            sr[k] = s * r[k];
            sum_r += sr[k];
            loss += 0.5 * r[k] * sr[k];
            wsum += s;
        }
        for (long j = 0; j < d; ++j)
            g[j] = (((g[j] + sr[0] * x0[j]) + sr[1] * x1[j]) + sr[2] * x2[j]) + sr[3] * x3[j];
    }
    for (; i < n; ++i) {
        const double *x = X + (size_t)i * (size_t)d;
        double r = dot8(x, w, d) + b - y[i];
        double s = sw ? sw[i] : 1.0;
        double sr = s * r;
        for (long j = 0; j < d; ++j) g[j] += sr * x[j];
        sum_r += sr;
        loss += 0.5 * r * sr;
        wsum += s;
    }
    out[d] = sum_r;
    out[d + 1] = loss;
    out[d + 2] = wsum;
}

/* σ(z) into *p and softplus(z) = log(1 + e^z), both without overflow (one exp either sign). */
static inline double sigmoid_softplus(double z, double *p)
{
    if (z >= 0) {
        double e = exp(-z);
        *p = 1.0 / (1.0 + e);
        return z + log1p(e);
    }
    double e = exp(z);
    *p = e / (1.0 + e);
    return log1p(e);
}

/* Binary log-loss on float64 rows: r = σ(z) − y, ℓ = softplus(z) − y z. */
CLONES void lepton_logistic_partial(const double *restrict X, const double *restrict y,
                                    const double *restrict sw, const double *restrict w, double b,
                                    long n, long d, double *restrict out)
{
    double *g = out;
    double sum_r = 0.0, loss = 0.0, wsum = 0.0;
    for (long j = 0; j < d; ++j) g[j] = 0.0;
    for (long i = 0; i < n; ++i) {
        const double *x = X + (size_t)i * (size_t)d;
        double z = dot8(x, w, d) + b;
        double p, softplus = sigmoid_softplus(z, &p);
        double s = sw ? sw[i] : 1.0;
        double sr = s * (p - y[i]);
        for (long j = 0; j < d; ++j) g[j] += sr * x[j];
        sum_r += sr;
        loss += s * (softplus - y[i] * z);
        wsum += s;
    }
    out[d] = sum_r;
    out[d + 1] = loss;
    out[d + 2] = wsum;
}

/* Many chunks in one call (the whole shard of a full-batch step): chunk c has
 * n[c] rows at X[c], y[c] (and sw[c] when sw is not NULL); its partial row goes
 * to out + c*out_stride laid out as [g (d), Σ s r (only with an intercept),
 * Σ s ℓ, Σ s]. Each chunk is computed exactly as by the one-chunk call. */
CLONES void lepton_partials(int kind, const double *const *X, const double *const *y,
                            const double *const *sw, const long *n, long n_chunks,
                            const double *restrict w, double b, long d, int intercept,
                            long out_stride, double *restrict out, double *restrict scratch)
{
    for (long c = 0; c < n_chunks; ++c) {
        const double *swc = sw ? sw[c] : NULL;
        if (kind == 0)
            lepton_linear_partial(X[c], y[c], swc, w, b, n[c], d, scratch);
        else
            lepton_logistic_partial(X[c], y[c], swc, w, b, n[c], d, scratch);
        double *row = out + c * out_stride;
        for (long j = 0; j < d; ++j) row[j] = scratch[j];
        long k = d;
        if (intercept) row[k++] = scratch[d];
        row[k] = scratch[d + 1];
        row[k + 1] = scratch[d + 2];
    }
}

/* Which clone of the kernels above this CPU runs (what the target_clones
 * resolver picks, highest first): "avx512f", "avx2" or "default" (also when
 * the compiler made no clones). For `lepton-hpc info` and summary.json. */
const char *lepton_isa(void)
{
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2")) return "avx2";
    return "default";
#else
    return "default (no clones: not GCC on x86)";
#endif
}

/* Rows ahead whose g entries the scatter prefetches (the columns are known ahead; the dot
 * phase needs none: its four interleaved chains keep enough reads of w in flight). */
#ifndef CSR_PREFETCH_ROWS
#define CSR_PREFETCH_ROWS 3
#endif
#if !defined(__GNUC__)
#define __builtin_prefetch(p, rw, loc) ((void)0)
#endif

/* One CSR row's residual r and s·ℓ from its score z (kind 0: least squares, 1: log-loss). */
static inline double csr_residual(int kind, double z, double y, double s, double *l)
{
    if (kind == 0) {
        double r = z - y;
        *l = 0.5 * r * (s * r);
        return r;
    }
    double p, softplus = sigmoid_softplus(z, &p);
    *l = s * (softplus - y * z);
    return p - y;
}

/* Row i's score x·w + b, the row's products summed in index order. */
static inline double csr_dot(const double *restrict data, const int *restrict indices, long lo, long hi,
                             const double *restrict w)
{
    double z = 0.0;
    for (long k = lo; k < hi; ++k) z += data[k] * w[indices[k]];
    return z;
}

/* One CSR chunk (n rows, int32 column indices sorted per row, int32 indptr from 0):
 * z = Σ data·w[col] + b, r = residual, g[col] += s·r·data. kind 0: least squares, 1: binary
 * log-loss. out = [g (d), Σ s r, Σ s ℓ, Σ s], the layout of the dense kernels.
 *
 * Rows go in blocks of CSR_BLOCK: first the block's scores (four rows' dot products as
 * interleaved independent chains, each row's sum still in index order), then its rows scatter
 * into g one after the other, in row order. The block's data and indices are read from memory
 * once (the scatter rereads them from L2), and each phase's random accesses touch one vector
 * (w, then g), not both. Every sum has the same operations in the same order as one row at a
 * time: the same bits wherever the chunk is computed. */
#ifndef CSR_BLOCK
#define CSR_BLOCK 256
#endif
CLONES void lepton_csr_partial(int kind, const double *restrict data, const int *restrict indices,
                               const int *restrict indptr, const double *restrict y,
                               const double *restrict sw, const double *restrict w, double b,
                               long n, long d, double *restrict out)
{
    double *g = out;
    double sum_r = 0.0, loss = 0.0, wsum = 0.0;
    double z[CSR_BLOCK];
    for (long j = 0; j < d; ++j) g[j] = 0.0;
    for (long i0 = 0; i0 < n; i0 += CSR_BLOCK) {
        const long nb = n - i0 < CSR_BLOCK ? n - i0 : CSR_BLOCK;
        long q = 0;
        for (; q + 4 <= nb; q += 4) {
            long lo[4], len[4];
            for (int t = 0; t < 4; ++t) {
                lo[t] = indptr[i0 + q + t];
                len[t] = indptr[i0 + q + t + 1] - lo[t];
            }
            long m = len[0];
            for (int t = 1; t < 4; ++t) m = len[t] < m ? len[t] : m;
            double a0 = 0.0, a1 = 0.0, a2 = 0.0, a3 = 0.0;
            const double *d0 = data + lo[0], *d1 = data + lo[1], *d2 = data + lo[2], *d3 = data + lo[3];
            const int *c0 = indices + lo[0], *c1 = indices + lo[1], *c2 = indices + lo[2], *c3 = indices + lo[3];
            for (long k = 0; k < m; ++k) {
                a0 += d0[k] * w[c0[k]];
                a1 += d1[k] * w[c1[k]];
                a2 += d2[k] * w[c2[k]];
                a3 += d3[k] * w[c3[k]];
            }
            for (long k = m; k < len[0]; ++k) a0 += d0[k] * w[c0[k]];
            for (long k = m; k < len[1]; ++k) a1 += d1[k] * w[c1[k]];
            for (long k = m; k < len[2]; ++k) a2 += d2[k] * w[c2[k]];
            for (long k = m; k < len[3]; ++k) a3 += d3[k] * w[c3[k]];
            z[q] = a0, z[q + 1] = a1, z[q + 2] = a2, z[q + 3] = a3;
        }
        for (; q < nb; ++q) z[q] = csr_dot(data, indices, indptr[i0 + q], indptr[i0 + q + 1], w);
        for (q = 0; q < nb; ++q) {
            const long i = i0 + q;
            if (CSR_PREFETCH_ROWS > 0 && i + CSR_PREFETCH_ROWS < n)  /* the columns are known ahead */
                for (long k = indptr[i + CSR_PREFETCH_ROWS]; k < indptr[i + CSR_PREFETCH_ROWS + 1]; ++k)
                    __builtin_prefetch(g + indices[k], 1, 3);
            double s = sw ? sw[i] : 1.0, l;
            double r = csr_residual(kind, z[q] + b, y[i], s, &l);
            double sr = s * r;
            for (long k = indptr[i]; k < indptr[i + 1]; ++k) g[indices[k]] += sr * data[k];
            sum_r += sr;
            loss += l;
            wsum += s;
        }
    }
    out[d] = sum_r;
    out[d + 1] = loss;
    out[d + 2] = wsum;
}
