/* The native kernels' own parallel loop (kernels/cpu/native_parallel.c): pure C (pthreads, C11 atomics), no Python,
 * so that it is tested natively and under qemu like the microkernels (tests/native/parallel_check.c).
 *
 * parallel_run(task, context, parts, threads) calls task(context, part, thread) for every part in [0, parts), on the
 * calling thread and on at most threads - 1 of the pool's workers, and returns when all are done; `thread` (below
 * `threads`) names the thread running the part, for per-thread scratch (read parallel_threads() once for both). Call it without the GIL: nothing here touches Python.
 *
 * Why not the Python pool (threads.py) for the native kernels: each split there costs a GIL hand-off to the worker,
 * one back, and the caller's wake-up from an event (~100 µs on the 2-core VM, 60 % of a 400 µs part); here the caller
 * starts on its parts at once, the parts are claimed one at a time (an atomic counter: a worker that wakes late takes
 * fewer), and the caller waits for the last part by spinning briefly, then blocking.
 * - No spinning workers: idle workers block on a condition variable (a core another process needs is given up).
 * - No oversubscription: while one caller's job runs, another caller runs its parts inline (the callers fill the
 *   cores); the parts of a job never call parallel_run again (they would run inline too).
 * - Lag: when the caller waits for a worker longer than it worked itself (and over PARALLEL_LAG_SECONDS), the worker
 *   was preempted by another process: every job runs inline for a pause that doubles from 20 ms to 2 s while it keeps
 *   happening right after each pause, and shrinks back when it stops (threads.py's lag detector, in C).
 * Results never depend on the split: each part computes its own outputs the same way whichever thread runs it. */
#ifndef EDGERT_NATIVE_PARALLEL_H
#define EDGERT_NATIVE_PARALLEL_H

#include <stdint.h>

#if defined(__GNUC__) || defined(__clang__)
#define PARALLEL_INTERNAL __attribute__((visibility("hidden")))
#else
#define PARALLEL_INTERNAL
#endif

/* at most this many threads (the caller and the workers) */
#define PARALLEL_MAX_THREADS 64

typedef void (*ParallelTask)(void *context, int64_t part, int thread);

/* Threads (the caller counted) from now on: 1 runs everything inline; workers start on the first split job. */
PARALLEL_INTERNAL void parallel_set_threads(int threads);
PARALLEL_INTERNAL int parallel_threads(void);
/* the lag pause on (1, the default) or off (0) */
PARALLEL_INTERNAL void parallel_set_lag(int on);
PARALLEL_INTERNAL void parallel_run(ParallelTask task, void *context, int64_t parts, int threads);

typedef struct {
    int64_t split, inline_, lags;   /* jobs run split, jobs of more than one part run inline, lag pauses started */
} ParallelStats;

PARALLEL_INTERNAL ParallelStats parallel_stats(void);

/* How many parts to cut `work` (any unit) into: one per `grain` of it, at most `per_thread` per thread (so that a late
 * or slow thread holds up at most a small share), at least one. */
PARALLEL_INTERNAL int64_t parallel_parts(int64_t work, int64_t grain, int64_t per_thread);

#endif
