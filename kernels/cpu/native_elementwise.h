/* The _native module's per-element and per-row entry points (native_elementwise.c), for _native.c's method table */
#ifndef EDGERT_NATIVE_ELEMENTWISE_H
#define EDGERT_NATIVE_ELEMENTWISE_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pointwise_ukernels.h"

PyObject *native_pointwise(PyObject *self, PyObject *args);
PyObject *native_softmax(PyObject *self, PyObject *args);
PyObject *native_row_means(PyObject *self, PyObject *args);
PyObject *native_layernorm(PyObject *self, PyObject *args);
PyObject *native_isa(PyObject *self, PyObject *unused);
PyObject *native_lstm(PyObject *self, PyObject *args);
/* elements per part of a large per-element or row call (split from twice that on); 0: the default */
void elementwise_set_part_elements(int64_t elements);

#endif
