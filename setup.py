"""Build step for archsearch's one native extension (the metadata is in pyproject.toml).

`archsearch.ops._kernels` is plain C (no PyTorch headers) with OpenMP. It is optional: on a
machine without a C compiler or OpenMP the install goes on without it, and archsearch uses
PyTorch's own kernels instead (same results, slower DARTS search steps);
`python -c "import archsearch.ops.native as n; print(n.available())"` tells which.
"""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    compile_args, link_args = ["/O2", "/openmp"], []
elif sys.platform == "darwin":  # Apple's clang has no OpenMP: build without it
    compile_args, link_args = ["-O3", "-std=c99"], []
else:
    compile_args, link_args = ["-O3", "-std=gnu99", "-fopenmp"], ["-fopenmp"]

setup(ext_modules=[Extension(
    "archsearch.ops._kernels", ["archsearch/ops/_kernels.c", "archsearch/ops/_batch_norm.c",
                                "archsearch/ops/_pool.c", "archsearch/ops/_pointwise.c"],
    depends=["archsearch/ops/_kernels.h"],
    extra_compile_args=compile_args, extra_link_args=link_args, optional=True)])
