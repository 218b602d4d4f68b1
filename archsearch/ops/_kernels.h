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

#define BLOCK 16 /* channels per register block: one AVX-512 vector of float32 */

/* _batch_norm.c: batch-statistics batch norm on channels-last float32 maps. */
PyObject *py_batch_norm_forward(PyObject *self, PyObject *args);
PyObject *py_batch_norm_backward(PyObject *self, PyObject *args);

#endif
