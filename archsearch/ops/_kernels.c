/*
 * Native CPU kernels for what PyTorch's CPU build does slowly (see archsearch/ops/native.py).
 *
 * depthwise_weight_grad: the weight gradient of a depthwise convolution on channels-last
 * float32 maps,
 *
 *     dW[c][i][j] = sum over n, ho, wo of  g[n][ho][wo][c] * x[n][ho*s + i*d - p][wo*s + j*d - p][c]
 *
 * (x read as zero outside the map). oneDNN has a fast kernel for undilated 3x3 kernels only
 * and runs 5x5 and dilated ones through a generic grouped kernel; on the DARTS search
 * shapes this loop is as fast (3x3 at 32x32) to 13x faster (dilated 5x5 at 8x8) than
 * either (benchmarks/depthwise_weight_grad.py).
 *
 * Work is split over output rows (n, ho) with OpenMP. The extension is loaded after torch,
 * so it shares torch's OpenMP runtime, thread pool and thread count
 * (torch.set_num_threads). Each thread sums into its own buffer and the buffers are added
 * in thread order: for a given thread count the result is deterministic.
 */
#include "_kernels.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Adds row (n, ho)'s contribution to acc, laid out (k, k, C). */
VECTOR_CLONES
static void accumulate_row(const float *restrict x, const float *restrict g,
                           float *restrict acc, int64_t n, int64_t ho, int64_t H, int64_t W,
                           int64_t C, int64_t Ho, int64_t Wo, int64_t k, int64_t s, int64_t d,
                           int64_t p)
{
    const float *g_row = g + (n * Ho + ho) * Wo * C;
    const int64_t c_blocked = C - C % BLOCK;
    for (int64_t i = 0; i < k; ++i) {
        const int64_t hi = ho * s + i * d - p;
        if (hi < 0 || hi >= H)
            continue;
        const float *x_row = x + (n * H + hi) * W * C;
        for (int64_t j = 0; j < k; ++j) {
            /* Input column of output column wo: wo*s + offset; keep those inside [0, W). */
            const int64_t offset = j * d - p;
            if (offset > W - 1)
                continue;
            const int64_t first = offset >= 0 ? 0 : (-offset + s - 1) / s;
            int64_t last = (W - 1 - offset) / s;
            if (last > Wo - 1)
                last = Wo - 1;
            float *a = acc + (i * k + j) * C;
            for (int64_t cb = 0; cb < c_blocked; cb += BLOCK) {
                float sum[BLOCK]; /* stays in a register across the wo loop */
                for (int cc = 0; cc < BLOCK; ++cc)
                    sum[cc] = a[cb + cc];
                for (int64_t wo = first; wo <= last; ++wo) {
                    const float *gp = g_row + wo * C + cb;
                    const float *xp = x_row + (wo * s + offset) * C + cb;
                    for (int cc = 0; cc < BLOCK; ++cc)
                        sum[cc] += gp[cc] * xp[cc];
                }
                for (int cc = 0; cc < BLOCK; ++cc)
                    a[cb + cc] = sum[cc];
            }
            for (int64_t c = c_blocked; c < C; ++c) {
                float sum = a[c];
                for (int64_t wo = first; wo <= last; ++wo)
                    sum += g_row[wo * C + c] * x_row[(wo * s + offset) * C + c];
                a[c] = sum;
            }
        }
    }
}

/* out (C, k, k) = dW; returns 0, or -1 when out of memory. */
static int weight_grad(const float *x, const float *g, float *out, int64_t N, int64_t H,
                       int64_t W, int64_t C, int64_t Ho, int64_t Wo, int64_t k, int64_t s,
                       int64_t d, int64_t p)
{
    const int64_t kkc = k * k * C;
    int threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    float *parts = calloc((size_t)threads * (size_t)kkc, sizeof(float));
    if (parts == NULL)
        return -1;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads)
#endif
    {
        int t = 0;
#ifdef _OPENMP
        t = omp_get_thread_num();
#endif
        float *acc = parts + (int64_t)t * kkc;
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
        for (int64_t row = 0; row < N * Ho; ++row)
            accumulate_row(x, g, acc, row / Ho, row % Ho, H, W, C, Ho, Wo, k, s, d, p);
    }
    /* Sum the threads' buffers in order, transposing (k, k, C) -> (C, k, k). */
    for (int64_t c = 0; c < C; ++c)
        for (int64_t ij = 0; ij < k * k; ++ij) {
            float sum = 0.0f;
            for (int t = 0; t < threads; ++t)
                sum += parts[(int64_t)t * kkc + ij * C + c];
            out[c * k * k + ij] = sum;
        }
    free(parts);
    return 0;
}

static PyObject *depthwise_weight_grad(PyObject *self, PyObject *args)
{
    unsigned long long x_ptr, g_ptr, out_ptr;
    long long N, H, W, C, Ho, Wo, k, s, d, p;
    (void)self;
    if (!PyArg_ParseTuple(args, "KKKLLLLLLLLLL", &x_ptr, &g_ptr, &out_ptr, &N, &H, &W, &C,
                          &Ho, &Wo, &k, &s, &d, &p))
        return NULL;
    /* The caller (native.py) checks tensors; these checks keep the loops inside them. */
    if (N <= 0 || H <= 0 || W <= 0 || C <= 0 || k <= 0 || s <= 0 || d <= 0 || p < 0 ||
        H + 2 * p - d * (k - 1) - 1 < 0 || W + 2 * p - d * (k - 1) - 1 < 0 ||
        Ho != (H + 2 * p - d * (k - 1) - 1) / s + 1 || Wo != (W + 2 * p - d * (k - 1) - 1) / s + 1 ||
        Ho <= 0 || Wo <= 0 || !x_ptr || !g_ptr || !out_ptr) {
        PyErr_SetString(PyExc_ValueError, "depthwise_weight_grad: inconsistent sizes");
        return NULL;
    }
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = weight_grad((const float *)(uintptr_t)x_ptr, (const float *)(uintptr_t)g_ptr,
                         (float *)(uintptr_t)out_ptr, N, H, W, C, Ho, Wo, k, s, d, p);
    Py_END_ALLOW_THREADS
    if (status != 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"depthwise_weight_grad", depthwise_weight_grad, METH_VARARGS,
     "depthwise_weight_grad(x_ptr, g_ptr, out_ptr, N, H, W, C, Ho, Wo, k, stride, dilation, "
     "padding): channels-last float32 depthwise weight gradient into out (C, k, k)."},
    {"batch_norm_forward", py_batch_norm_forward, METH_VARARGS,
     "batch_norm_forward(x_ptr, y_ptr, mean_ptr, invstd_ptr, weight_ptr or 0, M, C, eps, "
     "relu, stats_given, accumulate): batch-statistics BN of M channels-last rows of C "
     "float32, into y or (accumulate) added to it."},
    {"batch_norm_backward", py_batch_norm_backward, METH_VARARGS,
     "batch_norm_backward(g_ptr, x_ptr, mean_ptr, invstd_ptr, weight_ptr or 0, dx_ptr or 0, "
     "dw_ptr or 0, M, C, relu): its gradients."},
    {"pool_forward", py_pool_forward, METH_VARARGS,
     "pool_forward(x_ptr, y_ptr, N, H, W, C, stride, is_max): 3x3 pooling, padding 1, of a "
     "channels-last float32 map (average: padding excluded)."},
    {"avg_pool_backward", py_avg_pool_backward, METH_VARARGS,
     "avg_pool_backward(g_ptr, dx_ptr, N, H, W, C, stride): the average pooling's input "
     "gradient."},
    {"pointwise", py_pointwise, METH_VARARGS,
     "pointwise(x_ptr, b_ptr, y_ptr, M, K, N): y (M, N) = x (M, K) @ b (K, N), float32, "
     "row-major, N a multiple of 16."},
    {"max_pool_indices", py_max_pool_indices, METH_VARARGS,
     "max_pool_indices(x_ptr, indices_ptr, N, H, W, C, stride): the max pooling's winners, "
     "int64 h*W + w, laid out as PyTorch's max_pool2d_with_indices on channels-last maps."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels", "Native CPU kernels of archsearch.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
