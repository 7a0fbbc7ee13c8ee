/* Implicit-feedback ALS kernels for lepton_hpc (plain C, called through ctypes from
 * lepton_hpc/models/mf_implicit_c.py).
 *
 * Rows are segments of interactions: row s owns interactions [starts[s], starts[s+1]),
 * whose factor rows on the fixed side are F[idx[t]] (F row-major, k wide) and whose
 * counts are vals[order[t]] (order NULL: t itself). Every sum runs sequentially in
 * interaction order, so a segment's result has the same bits wherever it is computed.
 * Built without -ffast-math and without FMA contraction.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define KMAX 512

/* Wider SIMD where the CPU has it, chosen at run time; without FMA contraction every
 * variant does the same operations in the same order (the same bits). */
#if defined(__GNUC__) && !defined(__clang__) && (defined(__x86_64__) || defined(__i386__))
#define CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONES
#endif

/* Packed [triu(sum w f f^T) row by row, sum c f] per segment (w = alpha r, c = 1 + w), into
 * out[dest[s]] (dest NULL: out[s]). The full k x k square is accumulated (fixed-length rows,
 * which vectorise) and its upper triangle packed at the end; each entry sums (w f_a) f_b over
 * the segment in interaction order. Returns -1 when out of memory. */
CLONES int lepton_implicit_sums(long n_seg, const long *restrict starts, const int *restrict idx,
                                const long *restrict order, const double *restrict vals,
                                const double *restrict F, long k, double alpha, const long *restrict dest,
                                double *restrict out)
{
    long width = k * (k + 1) / 2 + k;
    double *sq = malloc(sizeof(double) * (k * k + k));
    if (!sq) return -1;
    double *bv = sq + k * k;
    for (long s = 0; s < n_seg; ++s) {
        memset(sq, 0, sizeof(double) * (k * k + k));
        for (long t = starts[s]; t < starts[s + 1]; ++t) {
            const double *restrict f = F + (long)idx[t] * k;
            double w = alpha * vals[order ? order[t] : t];
            double c = 1.0 + w;
            for (long a = 0; a < k; ++a) {
                double fa = w * f[a];
                double *restrict row = sq + a * k;
                for (long b = 0; b < k; ++b) row[b] += fa * f[b];
            }
            for (long a = 0; a < k; ++a) bv[a] += c * f[a];
        }
        double *restrict o = out + (dest ? dest[s] : s) * width;
        long off = 0;
        for (long a = 0; a < k; ++a) {
            memcpy(o + off, sq + a * k + a, sizeof(double) * (k - a));
            off += k - a;
        }
        memcpy(o + off, bv, sizeof(double) * k);
    }
    free(sq);
    return 0;
}

/* A x for one row: (G + reg I) x + sum w (f.x) f over the row's interactions. */
static void apply_row(long t0, long t1, const int *restrict idx, const double *restrict vals,
                      const double *restrict F, long k, double alpha, const double *restrict G, double reg,
                      const double *restrict x, double *restrict out)
{
    for (long a = 0; a < k; ++a) {
        double acc = 0.0;
        for (long b = 0; b < k; ++b) acc += G[a * k + b] * x[b];
        out[a] = acc + reg * x[a];
    }
    for (long t = t0; t < t1; ++t) {
        const double *f = F + (long)idx[t] * k;
        double d = 0.0;
        for (long a = 0; a < k; ++a) d += f[a] * x[a];
        double wd = alpha * vals[t] * d;
        for (long a = 0; a < k; ++a) out[a] += wd * f[a];
    }
}

static double dot(const double *x, const double *y, long k)
{
    double acc = 0.0;
    for (long a = 0; a < k; ++a) acc += x[a] * y[a];
    return acc;
}

/* `steps` conjugate-gradient steps for each row s from X[rows[s]] (in place), as the implicit
 * library's: a row stops once |r|^2 < eps. reg: one per segment. Returns -1 if k > KMAX. */
CLONES int lepton_implicit_cg(long n_seg, const long *starts, const long *rows, const int *idx, const double *vals,
                       const double *F, long k, double alpha, const double *G, const double *reg, long steps,
                       double eps, double *X)
{
    if (k > KMAX) return -1;
    double r[KMAX], p[KMAX], Ap[KMAX];
    for (long s = 0; s < n_seg; ++s) {
        double *x = X + rows[s] * k;
        long t0 = starts[s], t1 = starts[s + 1];
        apply_row(t0, t1, idx, vals, F, k, alpha, G, reg[s], x, Ap);
        for (long a = 0; a < k; ++a) r[a] = -Ap[a];
        for (long t = t0; t < t1; ++t) {
            const double *f = F + (long)idx[t] * k;
            double c = 1.0 + alpha * vals[t];
            for (long a = 0; a < k; ++a) r[a] += c * f[a];
        }
        memcpy(p, r, sizeof(double) * k);
        double rs = dot(r, r, k);
        if (rs < eps) continue;
        for (long it = 0; it < steps; ++it) {
            apply_row(t0, t1, idx, vals, F, k, alpha, G, reg[s], p, Ap);
            double step = rs / dot(p, Ap, k);
            for (long a = 0; a < k; ++a) {
                x[a] += step * p[a];
                r[a] -= step * Ap[a];
            }
            double rs_new = dot(r, r, k);
            if (rs_new < eps) break;
            double beta = rs_new / rs;
            for (long a = 0; a < k; ++a) p[a] = r[a] + beta * p[a];
            rs = rs_new;
        }
    }
    return 0;
}

/* sum over the interactions of c (1 - s)^2 - s^2, s = U[users[t]] . V[items[t]], c = 1 + alpha r:
 * the observed part of the implicit objective (the rest is sum_u u^T V^T V u). */
CLONES double lepton_implicit_observed(long n, const int *restrict users, const int *restrict items,
                                const double *restrict vals, const double *restrict U, const double *restrict V,
                                long k, double alpha)
{
    double acc = 0.0;
    for (long t = 0; t < n; ++t) {
        const double *u = U + (long)users[t] * k, *v = V + (long)items[t] * k;
        double s = 0.0;
        for (long a = 0; a < k; ++a) s += u[a] * v[a];
        double c = 1.0 + alpha * vals[t];
        acc += c * (1.0 - s) * (1.0 - s) - s * s;
    }
    return acc;
}
