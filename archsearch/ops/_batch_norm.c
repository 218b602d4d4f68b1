/*
 * Batch norm with batch statistics on channels-last float32 maps, seen as M = N*H*W rows
 * of C channels (see archsearch/ops/batch_norm.py).
 *
 * Forward (Ioffe & Szegedy, arXiv:1502.03167, Algorithm 1, without shift):
 *     mean[c] = sum_r x[r][c] / M,   var[c] = sum_r (x[r][c] - mean[c])^2 / M,
 *     invstd[c] = 1 / sqrt(var[c] + eps),   y[r][c] = (x[r][c] - mean[c]) * invstd[c] * w[c]
 * optionally followed by ReLU. Backward, with g the gradient reaching the BN (where a ReLU
 * followed, zero where x <= mean, i.e. where the ReLU's input was not positive):
 *     dw[c] = invstd[c] * sum_r g[r][c] (x[r][c] - mean[c])
 *     dx[r][c] = w[c] invstd[c] (g[r][c] - sum_g[c] / M - (x[r][c] - mean[c]) invstd[c]^2 sum_gx[c] / M)
 *
 * PyTorch's CPU kernels take 2-5x the time of a memory pass on the DARTS search shapes
 * (C = 16..64 channels); here each thread reads its own block of rows twice (sums, then the
 * elementwise pass; three times for the forward's two-pass variance), while it is still in
 * its cache. Sums run in float over CHUNK rows and are then added in double; the threads'
 * partial sums are added in thread order, so results are deterministic for a thread count.
 */
#include "_kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define CHUNK 64 /* rows summed in float before the double total takes them */

/* out[c] += sum over rows [r0, r1) of (x[r][c] - center[c]) (squared if `squares`). */
VECTOR_CLONES
static void sum_rows(const float *restrict x, int64_t r0, int64_t r1, int64_t C,
                     const float *restrict center, int squares, double *restrict out)
{
    const int64_t c_blocked = C - C % BLOCK;
    for (int64_t cb = 0; cb < c_blocked; cb += BLOCK) {
        float mid[BLOCK];
        for (int cc = 0; cc < BLOCK; ++cc)
            mid[cc] = center[cb + cc];
        for (int64_t r = r0; r < r1; r += CHUNK) {
            const int64_t end = r + CHUNK < r1 ? r + CHUNK : r1;
            float s[BLOCK] = {0};
            if (squares) {
                for (int64_t q = r; q < end; ++q)
                    for (int cc = 0; cc < BLOCK; ++cc) {
                        const float v = x[q * C + cb + cc] - mid[cc];
                        s[cc] += v * v;
                    }
            } else {
                for (int64_t q = r; q < end; ++q)
                    for (int cc = 0; cc < BLOCK; ++cc)
                        s[cc] += x[q * C + cb + cc] - mid[cc];
            }
            for (int cc = 0; cc < BLOCK; ++cc)
                out[cb + cc] += s[cc];
        }
    }
    for (int64_t c = c_blocked; c < C; ++c) {
        double total = 0.0;
        for (int64_t q = r0; q < r1; ++q) {
            const double v = (double)x[q * C + c] - center[c];
            total += squares ? v * v : v;
        }
        out[c] += total;
    }
}

/* sum_g[c] += sum of g, sum_gx[c] += sum of g (x - mean), over rows [r0, r1); with `relu`,
 * g counts only where x > mean. */
VECTOR_CLONES
static void grad_sums(const float *restrict g, const float *restrict x, int64_t r0, int64_t r1,
                      int64_t C, const float *restrict mean, int relu, double *restrict sum_g,
                      double *restrict sum_gx)
{
    const int64_t c_blocked = C - C % BLOCK;
    for (int64_t cb = 0; cb < c_blocked; cb += BLOCK) {
        float mu[BLOCK];
        for (int cc = 0; cc < BLOCK; ++cc)
            mu[cc] = mean[cb + cc];
        for (int64_t r = r0; r < r1; r += CHUNK) {
            const int64_t end = r + CHUNK < r1 ? r + CHUNK : r1;
            float sg[BLOCK] = {0}, sgx[BLOCK] = {0};
            for (int64_t q = r; q < end; ++q)
                for (int cc = 0; cc < BLOCK; ++cc) {
                    const float xc = x[q * C + cb + cc] - mu[cc];
                    float gv = g[q * C + cb + cc];
                    if (relu)
                        gv = xc > 0.0f ? gv : 0.0f;
                    sg[cc] += gv;
                    sgx[cc] += gv * xc;
                }
            for (int cc = 0; cc < BLOCK; ++cc) {
                sum_g[cb + cc] += sg[cc];
                sum_gx[cb + cc] += sgx[cc];
            }
        }
    }
    for (int64_t c = c_blocked; c < C; ++c) {
        double tg = 0.0, tgx = 0.0;
        for (int64_t q = r0; q < r1; ++q) {
            const float xc = x[q * C + c] - mean[c];
            const float gv = (relu && !(xc > 0.0f)) ? 0.0f : g[q * C + c];
            tg += gv;
            tgx += (double)gv * xc;
        }
        sum_g[c] += tg;
        sum_gx[c] += tgx;
    }
}

/* y = (x - mean) * scale over rows [r0, r1), then ReLU if `relu`; with `accumulate`,
 * y += (x - mean) * scale instead. */
VECTOR_CLONES
static void normalize_rows(const float *restrict x, float *restrict y, int64_t r0, int64_t r1,
                           int64_t C, const float *restrict mean, const float *restrict scale,
                           int relu, int accumulate)
{
    for (int64_t q = r0; q < r1; ++q) {
        const float *xr = x + q * C;
        float *yr = y + q * C;
        if (accumulate) {
            for (int64_t c = 0; c < C; ++c)
                yr[c] += (xr[c] - mean[c]) * scale[c];
        } else if (relu) {
            for (int64_t c = 0; c < C; ++c) {
                const float v = (xr[c] - mean[c]) * scale[c];
                yr[c] = v > 0.0f ? v : 0.0f;
            }
        } else {
            for (int64_t c = 0; c < C; ++c)
                yr[c] = (xr[c] - mean[c]) * scale[c];
        }
    }
}

/* dx = (g' - b) * a - (x - mean) * k over rows [r0, r1), g' = g masked as in grad_sums;
 * a = w invstd, b = sum_g / M, k = a invstd^2 sum_gx / M (the formula above, expanded). */
VECTOR_CLONES
static void input_grad_rows(const float *restrict g, const float *restrict x,
                            float *restrict dx, int64_t r0, int64_t r1, int64_t C,
                            const float *restrict mean, const float *restrict a,
                            const float *restrict b, const float *restrict k, int relu)
{
    for (int64_t q = r0; q < r1; ++q) {
        const float *gr = g + q * C, *xr = x + q * C;
        float *dr = dx + q * C;
        for (int64_t c = 0; c < C; ++c) {
            const float xc = xr[c] - mean[c];
            float gv = gr[c];
            if (relu)
                gv = xc > 0.0f ? gv : 0.0f;
            dr[c] = (gv - b[c]) * a[c] - xc * k[c];
        }
    }
}

/* Maps smaller than this (values) run on one thread: starting the team costs more. */
#define SERIAL_BELOW 16384

static int team_size(int64_t values)
{
#ifdef _OPENMP
    return values < SERIAL_BELOW ? 1 : omp_get_max_threads();
#else
    (void)values;
    return 1;
#endif
}

/* This thread's rows of M and the team's size. */
static void my_rows(int64_t M, int64_t *r0, int64_t *r1, int *nt)
{
    int t = 0, n = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    n = omp_get_num_threads();
#endif
    *r0 = M * t / n;
    *r1 = M * (t + 1) / n;
    *nt = n;
}

static int thread_index(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Adds the threads' partial sums in thread order into out[c] (then zeroes the parts). */
static void reduce_parts(double *parts, int threads, int64_t C, double *out)
{
    for (int64_t c = 0; c < C; ++c) {
        double total = 0.0;
        for (int t = 0; t < threads; ++t)
            total += parts[(int64_t)t * C + c];
        out[c] = total;
    }
    memset(parts, 0, (size_t)threads * (size_t)C * sizeof(double));
}

/* Forward; with `stats_given`, mean and invstd are read, else computed and written. */
static int forward(const float *x, float *y, float *mean, float *invstd, const float *w,
                   int64_t M, int64_t C, double eps, int relu, int stats_given, int accumulate)
{
    const int threads = team_size(M * C);
    double *parts = calloc((size_t)threads * (size_t)C + (size_t)C, sizeof(double));
    float *coef = calloc(2 * (size_t)C, sizeof(float)); /* zero center, then scale */
    if (parts == NULL || coef == NULL) {
        free(parts);
        free(coef);
        return -1;
    }
    double *total = parts + (int64_t)threads * C;
    float *zero = coef, *scale = coef + C;
    int team = 1;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
        int64_t r0, r1;
        int nt;
        my_rows(M, &r0, &r1, &nt);
        double *mine = parts + (int64_t)thread_index() * C;
        if (!stats_given) {
            sum_rows(x, r0, r1, C, zero, 0, mine);
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
            {
                team = nt;
                reduce_parts(parts, nt, C, total);
                for (int64_t c = 0; c < C; ++c)
                    mean[c] = (float)(total[c] / (double)M);
            }
            sum_rows(x, r0, r1, C, mean, 1, mine);
#ifdef _OPENMP
#pragma omp barrier
#endif
        }
#ifdef _OPENMP
#pragma omp single
#endif
        {
            if (!stats_given) {
                reduce_parts(parts, team, C, total);
                for (int64_t c = 0; c < C; ++c)
                    invstd[c] = (float)(1.0 / sqrt(total[c] / (double)M + eps));
            }
            for (int64_t c = 0; c < C; ++c)
                scale[c] = w ? invstd[c] * w[c] : invstd[c];
        }
        normalize_rows(x, y, r0, r1, C, mean, scale, relu, accumulate);
    }
    free(parts);
    free(coef);
    return 0;
}

/* Backward: dx (if not NULL) and dw (if not NULL). */
static int backward(const float *g, const float *x, const float *mean, const float *invstd,
                    const float *w, float *dx, float *dw, int64_t M, int64_t C, int relu)
{
    const int threads = team_size(M * C);
    double *parts = calloc(2 * ((size_t)threads + 1) * (size_t)C, sizeof(double));
    float *coef = calloc(3 * (size_t)C, sizeof(float));
    if (parts == NULL || coef == NULL) {
        free(parts);
        free(coef);
        return -1;
    }
    double *parts_gx = parts + (int64_t)threads * C;
    double *sum_g = parts + 2 * (int64_t)threads * C, *sum_gx = sum_g + C;
    float *a = coef, *b = coef + C, *k = coef + 2 * C;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
        int64_t r0, r1;
        int nt;
        my_rows(M, &r0, &r1, &nt);
        const int64_t t = thread_index();
        grad_sums(g, x, r0, r1, C, mean, relu, parts + t * C, parts_gx + t * C);
#ifdef _OPENMP
#pragma omp barrier
#pragma omp single
#endif
        {
            reduce_parts(parts, nt, C, sum_g);
            reduce_parts(parts_gx, nt, C, sum_gx);
            for (int64_t c = 0; c < C; ++c) {
                const double is = invstd[c];
                if (dw)
                    dw[c] = (float)(sum_gx[c] * is);
                a[c] = (float)(w ? is * w[c] : is);
                b[c] = (float)(sum_g[c] / (double)M);
                k[c] = (float)((w ? is * w[c] : is) * is * is * sum_gx[c] / (double)M);
            }
        }
        if (dx)
            input_grad_rows(g, x, dx, r0, r1, C, mean, a, b, k, relu);
    }
    free(parts);
    free(coef);
    return 0;
}

#define PTR(p) ((void *)(uintptr_t)(p))

PyObject *py_batch_norm_forward(PyObject *self, PyObject *args)
{
    unsigned long long x, y, mean, invstd, w;
    long long M, C;
    double eps;
    int relu, stats_given, accumulate, status;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKKKKLLdppp", &x, &y, &mean, &invstd, &w, &M, &C, &eps,
                          &relu, &stats_given, &accumulate))
        return NULL;
    /* The caller (native.py) checks tensors; these checks keep the loops inside them. */
    if (M <= 0 || C <= 0 || !x || !y || !mean || !invstd || !(eps >= 0.0) ||
        (accumulate && relu)) {
        PyErr_SetString(PyExc_ValueError, "batch_norm_forward: inconsistent arguments");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    status = forward(PTR(x), PTR(y), PTR(mean), PTR(invstd), PTR(w), M, C, eps, relu,
                     stats_given, accumulate);
    Py_END_ALLOW_THREADS
    if (status != 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

PyObject *py_batch_norm_backward(PyObject *self, PyObject *args)
{
    unsigned long long g, x, mean, invstd, w, dx, dw;
    long long M, C;
    int relu, status;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKKKKKKLLp", &g, &x, &mean, &invstd, &w, &dx, &dw, &M, &C,
                          &relu))
        return NULL;
    if (M <= 0 || C <= 0 || !g || !x || !mean || !invstd || (!dx && !dw)) {
        PyErr_SetString(PyExc_ValueError, "batch_norm_backward: inconsistent arguments");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    status = backward(PTR(g), PTR(x), PTR(mean), PTR(invstd), PTR(w), PTR(dx), PTR(dw), M, C,
                      relu);
    Py_END_ALLOW_THREADS
    if (status != 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}
