/* The _native module's fused layer groups (native_fused.c), for _native.c's method table */
#ifndef EDGERT_NATIVE_FUSED_H
#define EDGERT_NATIVE_FUSED_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

PyObject *native_squeeze_excite(PyObject *self, PyObject *args);

#endif
