/* Shared by the C files of archsearch.ops._kernels (see archsearch/ops/native.py). */
#ifndef ARCHSEARCH_KERNELS_H
#define ARCHSEARCH_KERNELS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* One binary for every x86-64 CPU: AVX-512 and AVX2/FMA versions of the hot loops, picked
 * at load time, and a baseline one. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__linux__)
#define VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define VECTOR_CLONES
#endif

/* Helpers of the cloned loops: inlined into each clone, so compiled for its target. */
#if defined(__GNUC__)
#define ALWAYS_INLINE __attribute__((always_inline))
#else
#define ALWAYS_INLINE
#endif

#define BLOCK 16 /* channels per register block: one AVX-512 vector of float32 */

/* A loop over the BLOCK channels of a block, left to the loop vectorizer: one vector
 * operation per statement. Unrolled into scalars first (GCC's default for so short a loop),
 * a select such as a max with NaN propagation would not be vectorized at all. */
#define FOR_BLOCK(cc) _Pragma("GCC unroll 1") for (int cc = 0; cc < BLOCK; ++cc)

/* _batch_norm.c: batch-statistics batch norm on channels-last float32 maps. */
PyObject *py_batch_norm_forward(PyObject *self, PyObject *args);
PyObject *py_batch_norm_backward(PyObject *self, PyObject *args);

/* _pool.c: 3x3 max and average pooling (padding 1, stride 1 or 2), channels-last float32. */
PyObject *py_pool_forward(PyObject *self, PyObject *args);
PyObject *py_avg_pool_backward(PyObject *self, PyObject *args);
PyObject *py_max_pool_indices(PyObject *self, PyObject *args);

/* _pointwise.c: the matrix product of a 1x1 convolution on channels-last float32 maps. */
PyObject *py_pointwise(PyObject *self, PyObject *args);

#endif
