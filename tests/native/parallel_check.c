/* kernels/cpu/native_parallel.c on its own (pure C, pthreads): every part of every job runs exactly once, on a thread
 * numbered below the job's thread count; parts that call parallel_run again run their inner parts inline; several
 * callers at once all get their jobs done; one thread runs everything inline; a worker that holds the caller up (a part
 * that sleeps on it, as a preempted worker would) starts the lag pause: the next jobs run inline. Prints "parallel ok" (built and run by
 * tests/test_cpu_native_aarch64.py on the host and, cross-compiled for aarch64, under qemu-user). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "native_parallel.h"

#define PARTS 97
#define JOBS 300

typedef struct {
    atomic_int hits[PARTS];
    atomic_int bad_thread, threads_seen[PARALLEL_MAX_THREADS];
    int threads;
    int nested;
} Job;

static void inner_part(void *context, int64_t part, int thread) {
    atomic_int *count = context;
    (void)part;
    if (thread != 0) abort();   /* nested jobs run inline on the thread that runs the outer part */
    atomic_fetch_add(count, 1);
}

static void part(void *context, int64_t index, int thread) {
    Job *job = context;
    atomic_fetch_add(&job->hits[index], 1);
    if (thread < 0 || thread >= job->threads) atomic_fetch_add(&job->bad_thread, 1);
    else atomic_fetch_add(&job->threads_seen[thread], 1);
    volatile double sink = 0;   /* a little work, so that the workers get a share */
    for (int i = 0; i < 2000; ++i) sink += i * 0.5;
    if (job->nested) {
        atomic_int count = 0;
        parallel_run(inner_part, &count, 5, job->threads);
        if (atomic_load(&count) != 5) abort();
    }
}

static int check(Job *job, int64_t parts) {
    for (int64_t i = 0; i < parts; ++i)
        if (atomic_load(&job->hits[i]) != 1) return 0;
    return atomic_load(&job->bad_thread) == 0;
}

static void *caller(void *argument) {
    int *failures = argument;
    for (int j = 0; j < JOBS; ++j) {
        Job *job = calloc(1, sizeof(Job));
        job->threads = parallel_threads();
        job->nested = j % 7 == 0;
        parallel_run(part, job, PARTS, job->threads);
        if (!check(job, PARTS)) ++*failures;
        free(job);
    }
    return NULL;
}

static double seconds_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* a part that sleeps 50 ms when a worker runs it (a preempted worker); on the caller, part 0 waits (up to 0.2 s) for a
 * worker to take a part first, so that the caller works briefly and then waits long */
static void slow_on_worker(void *context, int64_t part, int thread) {
    atomic_int *worker_parts = context;
    if (thread != 0) {
        atomic_fetch_add(worker_parts, 1);
        struct timespec pause = {0, 50000000};
        nanosleep(&pause, NULL);
    } else if (part == 0) {
        for (double start = seconds_now(); atomic_load(worker_parts) == 0 && seconds_now() - start < 0.2;) {
        }
    }
}

/* the lag pause: a job whose worker sleeps in its part pauses splitting; 0 when it did, else 1 */
static int lag_pause_check(void) {
    parallel_set_threads(2);
    parallel_set_lag(1);
    ParallelStats before = parallel_stats();
    for (int tries = 0; tries < 20 && parallel_stats().lags == before.lags; ++tries) {
        atomic_int worker_parts = 0;
        parallel_run(slow_on_worker, &worker_parts, 8, 2);
    }
    if (parallel_stats().lags == before.lags) return 1;   /* the worker never took a part in 20 jobs */
    ParallelStats paused = parallel_stats();
    atomic_int worker_parts = 0;
    worker_parts = 1;   /* part 0 need not wait: the job must run inline, within the 20 ms pause */
    parallel_run(slow_on_worker, &worker_parts, 8, 2);
    ParallelStats after = parallel_stats();
    parallel_set_lag(0);
    return !(after.inline_ == paused.inline_ + 1 && after.split == paused.split && atomic_load(&worker_parts) == 1);
}

int main(void) {
    parallel_set_lag(0);   /* qemu and loaded machines lag: the pause would only make more jobs inline */
    parallel_set_threads(3);
    int failures = 0, worker_parts = 0;
    for (int j = 0; j < JOBS; ++j) {
        Job *job = calloc(1, sizeof(Job));
        job->threads = 3;
        job->nested = j % 5 == 0;
        parallel_run(part, job, j % 2 ? PARTS : 1 + j % 13, 3);
        if (!check(job, j % 2 ? PARTS : 1 + j % 13)) ++failures;
        worker_parts += atomic_load(&job->threads_seen[1]) + atomic_load(&job->threads_seen[2]);
        free(job);
    }
    int per_caller[4] = {0};
    pthread_t callers[4];
    for (int i = 0; i < 4; ++i) pthread_create(&callers[i], NULL, caller, &per_caller[i]);
    for (int i = 0; i < 4; ++i) {
        pthread_join(callers[i], NULL);
        failures += per_caller[i];
    }
    parallel_set_threads(1);   /* inline: every part on the caller */
    Job *job = calloc(1, sizeof(Job));
    job->threads = 1;
    parallel_run(part, job, PARTS, 1);
    if (!check(job, PARTS) || atomic_load(&job->threads_seen[0]) != PARTS) ++failures;
    free(job);
    if (lag_pause_check()) {
        printf("parallel FAILED: no lag pause after a worker held its caller up\n");
        return 1;
    }
    ParallelStats stats = parallel_stats();
    if (failures || stats.split == 0) {
        printf("parallel FAILED: %d bad jobs, %lld split\n", failures, (long long)stats.split);
        return 1;
    }
    printf("parallel ok\n");
    fprintf(stderr, "%lld jobs split, %lld inline, %d parts on workers\n", (long long)stats.split,
            (long long)stats.inline_, worker_parts);
    return 0;
}
