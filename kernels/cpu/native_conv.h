/* What _native.c shares with native_conv.c: the geometry record, the padded scratch planes and the checked size
 * helpers (defined in _native.c; hidden from other libraries in the process), and native_conv.c's entry points. */
#ifndef EDGERT_NATIVE_CONV_H
#define EDGERT_NATIVE_CONV_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define NATIVE_INTERNAL __attribute__((visibility("hidden")))
#else
#define NATIVE_INTERNAL
#endif

typedef struct {
    int64_t planes, channels, height, width, out_height, out_width;
    int64_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
} Geometry;

enum { GEOMETRY_FIELDS = 14 };

/* The scratch plane: padded rows, each split into stride_w phases of phase_width columns (padded column j at
 * phase j % stride_w, index j / stride_w), and per kernel tap its offset from an output row's first input row. */
typedef struct {
    int64_t rows, phase_width, row_stride;
    int64_t top, elements;   /* the padded row data[0] holds; one plane's floats (its rows x row_stride) */
    float *data;
    int64_t *taps;
    int64_t *phases;   /* per phase: its first input column, where that lands in a scratch row, its columns */
} Scratch;

/* A scratch plane larger than this is no real layer's (a 16k x 16k plane is 1 GiB): refused before malloc, since
 * an overcommitting kernel would grant it and kill the process on first touch */
#define MAX_SCRATCH_FLOATS ((int64_t)1 << 28)

/* a * b and the product of count sizes, or -1 with OverflowError set when they do not fit an int64 */
NATIVE_INTERNAL int checked_multiply(int64_t a, int64_t b, int64_t *product);
NATIVE_INTERNAL int checked_product(int count, const int64_t *sizes, int64_t *product);
/* the geometry record (int64s) from its buffer, validated; -1 with ValueError */
NATIVE_INTERNAL int read_geometry(Py_buffer *buffer, Geometry *g);
/* element count of a buffer of `count` dims, checked for overflow and against the buffer's length */
NATIVE_INTERNAL int check_size(Py_buffer *buffer, const char *what, int count, const int64_t *dims);
#define CHECK_SIZE(buffer, what, ...)                                                                    \
    check_size(buffer, what, (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__})
/* `copies` scratch planes of all padded rows or, window_rows > 0, of that many (see _native.c) */
NATIVE_INTERNAL int make_scratch(const Geometry *g, float padding, int64_t copies, int64_t window_rows, int fill,
                                 Scratch *s);
NATIVE_INTERNAL void free_scratch(Scratch *s);
/* input rows [first_row, end_row) of a plane -> the scratch plane's interior */
NATIVE_INTERNAL void fill_rows(const Geometry *g, const Scratch *s, const float *source, int64_t first_row,
                               int64_t end_row);

/* multiply-adds per part of a convolution split over native_parallel.c's threads (set_threads(part_work=)) */
NATIVE_INTERNAL extern int64_t conv_part_work;

PyObject *conv2d_direct(PyObject *self, PyObject *args);
PyObject *conv2d_pointwise(PyObject *self, PyObject *args);
PyObject *native_conv_isa(PyObject *self, PyObject *unused);
PyObject *native_set_threads(PyObject *self, PyObject *args, PyObject *keywords);
PyObject *native_parallel_stats(PyObject *self, PyObject *unused);
/* native_gemm.c */
PyObject *native_gemm(PyObject *self, PyObject *args);
/* native_resize.c */
PyObject *native_resize2d(PyObject *self, PyObject *args);

#endif
