/*
 * 3x3 pooling with padding 1 and stride 1 or 2 on channels-last float32 maps (the DARTS
 * ops max_pool_3x3 and avg_pool_3x3; see archsearch/ops/pool.py), x (N, H, W, C) ->
 * y (N, Ho, Wo, C) with Ho = (H - 1) / s + 1. Results equal PyTorch's bit for bit.
 *
 * Max: y = the largest value in the window, the first one in row-major order on ties, NaN
 * if the window holds one (as PyTorch). No index map is kept for backward: when it is
 * needed, max_pool_indices finds the winners again, in the int64 layout PyTorch's
 * max_pool2d_with_indices gives, for PyTorch's own backward kernel.
 * Average, padding excluded (count_include_pad=False): y = sum of the window's values inside
 * the map / their count; backward: every value inside the window gets g / count.
 *
 * PyTorch's channels-last kernels for these take 3-4x as long at the DARTS search shapes
 * (the max pooling also writes an int64 index per output value, and finding the winners
 * again cost as much). Forward work is split over output rows; the average pooling's
 * backward over images, so that no two threads add into the same input gradient.
 */
#include "_kernels.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* The window of output index o along a side of n values: [*lo, *hi). */
static void window(int64_t o, int64_t s, int64_t n, int64_t *lo, int64_t *hi)
{
    const int64_t start = o * s - 1;
    *lo = start < 0 ? 0 : start;
    *hi = start + 3 > n ? n : start + 3;
}

/* y[0:BLOCK] = pooling of the window [h0, h1) x [w0, w1) of image n at channels [cb,
 * cb + BLOCK): a fixed-width block, one vector register wide on AVX-512. */
ALWAYS_INLINE
static inline void pool_block(const float *restrict x, float *restrict y, int64_t n,
                              int64_t h0, int64_t h1, int64_t w0, int64_t w1, int64_t H,
                              int64_t W, int64_t C, int64_t cb, int is_max)
{
    float acc[BLOCK];
    FOR_BLOCK(cc)
        acc[cc] = is_max ? -INFINITY : 0.0f;
    for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) {
            const float *in = x + ((n * H + h) * W + w) * C + cb;
            if (is_max) {
                FOR_BLOCK(cc)
                    acc[cc] = (in[cc] > acc[cc] || in[cc] != in[cc]) ? in[cc] : acc[cc];
            } else {
                FOR_BLOCK(cc)
                    acc[cc] += in[cc];
            }
        }
    if (!is_max) {
        const float count = (float)((h1 - h0) * (w1 - w0));
        FOR_BLOCK(cc)
            acc[cc] /= count;
    }
    FOR_BLOCK(cc)
        y[cc] = acc[cc];
}

/* One output row (n, ho) of the pooling. */
VECTOR_CLONES
static void pool_row(const float *restrict x, float *restrict y, int64_t n, int64_t ho,
                     int64_t H, int64_t W, int64_t C, int64_t Wo, int64_t s, int is_max)
{
    const int64_t c_blocked = C - C % BLOCK;
    int64_t h0, h1;
    window(ho, s, H, &h0, &h1);
    for (int64_t wo = 0; wo < Wo; ++wo) {
        int64_t w0, w1;
        window(wo, s, W, &w0, &w1);
        float *out = y + ((n * ((H - 1) / s + 1) + ho) * Wo + wo) * C;
        for (int64_t cb = 0; cb < c_blocked; cb += BLOCK)
            pool_block(x, out + cb, n, h0, h1, w0, w1, H, W, C, cb, is_max);
        for (int64_t c = c_blocked; c < C; ++c) {
            float acc = is_max ? -INFINITY : 0.0f;
            for (int64_t h = h0; h < h1; ++h)
                for (int64_t w = w0; w < w1; ++w) {
                    const float v = x[((n * H + h) * W + w) * C + c];
                    acc = is_max ? ((v > acc || v != v) ? v : acc) : acc + v;
                }
            out[c] = is_max ? acc : acc / (float)((h1 - h0) * (w1 - w0));
        }
    }
}

/* Adds the average pooling's share of the gradient g (BLOCK channels) of one output to
 * every input of its window. */
ALWAYS_INLINE
static inline void unpool_block(const float *restrict g, float *restrict dx, int64_t n,
                                int64_t h0, int64_t h1, int64_t w0, int64_t w1, int64_t H,
                                int64_t W, int64_t C, int64_t cb)
{
    const float count = (float)((h1 - h0) * (w1 - w0));
    float share[BLOCK];
    FOR_BLOCK(cc) share[cc] = g[cc] / count;
    for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) {
            float *d = dx + ((n * H + h) * W + w) * C + cb;
            FOR_BLOCK(cc) d[cc] += share[cc];
        }
}

/* where[0:BLOCK] = the flat index h W + w of the max of channels [cb, cb + BLOCK) over
 * [h0, h1) x [w0, w1): the first in row-major order on ties, a NaN if there is one. */
ALWAYS_INLINE
static inline void argmax_block(const float *restrict x, int64_t *restrict where, int64_t n,
                                int64_t h0, int64_t h1, int64_t w0, int64_t w1, int64_t H,
                                int64_t W, int64_t C, int64_t cb)
{
    float best[BLOCK];
    int64_t at[BLOCK];
    FOR_BLOCK(cc) {
        best[cc] = -INFINITY;
        at[cc] = h0 * W + w0; /* a window of -inf only: its first position, as PyTorch */
    }
    for (int64_t h = h0; h < h1; ++h)
        for (int64_t w = w0; w < w1; ++w) {
            const float *in = x + ((n * H + h) * W + w) * C + cb;
            const int64_t here = h * W + w;
            FOR_BLOCK(cc) {
                const int take = (in[cc] > best[cc]) | (in[cc] != in[cc]);
                best[cc] = take ? in[cc] : best[cc];
                at[cc] = take ? here : at[cc];
            }
        }
    FOR_BLOCK(cc) where[cc] = at[cc];
}

/* The max pooling's winners of output row (n, ho), in the layout of PyTorch's
 * max_pool2d_with_indices on channels-last maps (its backward reads them). */
VECTOR_CLONES
static void argmax_row(const float *restrict x, int64_t *restrict where, int64_t n, int64_t ho,
                       int64_t H, int64_t W, int64_t C, int64_t s)
{
    const int64_t Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1, c_blocked = C - C % BLOCK;
    int64_t h0, h1;
    window(ho, s, H, &h0, &h1);
    for (int64_t wo = 0; wo < Wo; ++wo) {
        int64_t w0, w1;
        window(wo, s, W, &w0, &w1);
        int64_t *out = where + ((n * Ho + ho) * Wo + wo) * C;
        for (int64_t cb = 0; cb < c_blocked; cb += BLOCK)
            argmax_block(x, out + cb, n, h0, h1, w0, w1, H, W, C, cb);
        for (int64_t c = c_blocked; c < C; ++c) {
            float best = -INFINITY;
            int64_t at = h0 * W + w0;
            for (int64_t h = h0; h < h1; ++h)
                for (int64_t w = w0; w < w1; ++w) {
                    const float v = x[((n * H + h) * W + w) * C + c];
                    if (v > best || v != v) {
                        best = v;
                        at = h * W + w;
                    }
                }
            out[c] = at;
        }
    }
}

/* The average pooling's input gradient of image n (dx zeroed by the caller). */
VECTOR_CLONES
static void avg_backward_image(const float *restrict g, float *restrict dx, int64_t n,
                               int64_t H, int64_t W, int64_t C, int64_t s)
{
    const int64_t Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1, c_blocked = C - C % BLOCK;
    for (int64_t ho = 0; ho < Ho; ++ho) {
        int64_t h0, h1;
        window(ho, s, H, &h0, &h1);
        for (int64_t wo = 0; wo < Wo; ++wo) {
            int64_t w0, w1;
            window(wo, s, W, &w0, &w1);
            const float *go = g + ((n * Ho + ho) * Wo + wo) * C;
            for (int64_t cb = 0; cb < c_blocked; cb += BLOCK)
                unpool_block(go + cb, dx, n, h0, h1, w0, w1, H, W, C, cb);
            const float count = (float)((h1 - h0) * (w1 - w0));
            for (int64_t c = c_blocked; c < C; ++c)
                for (int64_t h = h0; h < h1; ++h)
                    for (int64_t w = w0; w < w1; ++w)
                        dx[((n * H + h) * W + w) * C + c] += go[c] / count;
        }
    }
}

static int team_size(int64_t values)
{
#ifdef _OPENMP
    return values < 16384 ? 1 : omp_get_max_threads();
#else
    (void)values;
    return 1;
#endif
}

static void forward(const float *x, float *y, int64_t N, int64_t H, int64_t W, int64_t C,
                    int64_t s, int is_max)
{
    const int64_t Ho = (H - 1) / s + 1, Wo = (W - 1) / s + 1;
    const int threads = team_size(N * H * W * C);
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
    for (int64_t row = 0; row < N * Ho; ++row)
        pool_row(x, y, row / Ho, row % Ho, H, W, C, Wo, s, is_max);
}

static void avg_backward(const float *g, float *dx, int64_t N, int64_t H, int64_t W,
                         int64_t C, int64_t s)
{
    const int threads = team_size(N * H * W * C);
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
    for (int64_t n = 0; n < N; ++n) {
        memset(dx + n * H * W * C, 0, (size_t)(H * W * C) * sizeof(float));
        avg_backward_image(g, dx, n, H, W, C, s);
    }
}

static void max_indices(const float *x, int64_t *where, int64_t N, int64_t H, int64_t W,
                        int64_t C, int64_t s)
{
    const int64_t Ho = (H - 1) / s + 1;
    const int threads = team_size(N * H * W * C);
    (void)threads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) num_threads(threads)
#endif
    for (int64_t row = 0; row < N * Ho; ++row)
        argmax_row(x, where, row / Ho, row % Ho, H, W, C, s);
}

#define PTR(p) ((void *)(uintptr_t)(p))

/* What every entry point here takes: two addresses (input, output), the input's sizes, the
 * stride and, for the forward pass, whether to take the max. */
typedef struct {
    unsigned long long in, out;
    long long N, H, W, C, s;
    int is_max;
} MapArgs;

static int parse_map_args(PyObject *args, const char *name, MapArgs *m)
{
    m->is_max = 0;
    if (!PyArg_ParseTuple(args, "KKLLLLL|p", &m->in, &m->out, &m->N, &m->H, &m->W, &m->C,
                          &m->s, &m->is_max))
        return 0;
    /* The caller (native.py) checks tensors; these checks keep the loops inside them. */
    if (m->N <= 0 || m->H <= 0 || m->W <= 0 || m->C <= 0 || (m->s != 1 && m->s != 2) ||
        !m->in || !m->out) {
        PyErr_Format(PyExc_ValueError, "%s: inconsistent arguments", name);
        return 0;
    }
    return 1;
}

PyObject *py_pool_forward(PyObject *self, PyObject *args)
{
    MapArgs m;
    (void)self;
    if (!parse_map_args(args, "pool_forward", &m))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    forward(PTR(m.in), PTR(m.out), m.N, m.H, m.W, m.C, m.s, m.is_max);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyObject *py_avg_pool_backward(PyObject *self, PyObject *args)
{
    MapArgs m;
    (void)self;
    if (!parse_map_args(args, "avg_pool_backward", &m))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    avg_backward(PTR(m.in), PTR(m.out), m.N, m.H, m.W, m.C, m.s);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

PyObject *py_max_pool_indices(PyObject *self, PyObject *args)
{
    MapArgs m;
    (void)self;
    if (!parse_map_args(args, "max_pool_indices", &m))
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    max_indices(PTR(m.in), PTR(m.out), m.N, m.H, m.W, m.C, m.s);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}
