/* The native kernels' parallel loop: see native_parallel.h. */
#include "native_parallel.h"

#if defined(_WIN32) || defined(EDGERT_NO_THREADS)
/* no pthreads: every job runs inline on the caller */
static int configured = 1;
void parallel_set_threads(int threads) { (void)threads; }
void parallel_set_lag(int on) { (void)on; }
int parallel_threads(void) { return configured; }
void parallel_run(ParallelTask task, void *context, int64_t parts, int threads) {
    (void)threads;
    for (int64_t part = 0; part < parts; ++part) task(context, part, 0);
}
ParallelStats parallel_stats(void) { return (ParallelStats){0, 0, 0}; }
#else

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define LAG_SECONDS 1e-4          /* a shorter wait for a worker is wake-up jitter, not a preempted worker */
#define LAG_PAUSE_FIRST 0.02      /* seconds every job runs inline after a lag, doubling while lags keep coming */
#define LAG_PAUSE_LAST 2.0
#define SPIN_SECONDS 5e-5         /* the caller spins this long for the last part before it blocks */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;       /* workers wait here for a job */
static pthread_cond_t finished = PTHREAD_COND_INITIALIZER;   /* a blocked caller waits here for its last part */

static atomic_int configured = 1, started = 0;   /* threads asked for (caller included); workers running */
static atomic_int busy = 0;                      /* a caller's job is in flight */
static _Thread_local int inside = 0;             /* this thread runs a part (or is a worker): nested jobs run inline */

/* the job, written under the lock before job_generation moves */
static ParallelTask job_task;
static void *job_context;
static int64_t job_parts;
static int job_threads;            /* workers numbered below this take parts */
static uint64_t job_generation;      /* under the lock */
static int caller_blocked;           /* under the lock */
static _Atomic uint64_t claims;      /* (generation mod 2^32) << 32 | next unclaimed part: stale workers claim nothing */
static _Atomic int64_t done;         /* parts of the current job finished */

static _Atomic int64_t inline_until_ns, pause_ns;   /* the lag pause */
static _Atomic int64_t split_jobs, inline_jobs, lag_pauses;
static atomic_int lag_on = 1;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* the next part of job `generation` (of `parts`), or -1 when all are claimed or another job has begun */
static int64_t claim(uint64_t generation, int64_t parts) {
    uint64_t current = atomic_load(&claims);
    for (;;) {
        if ((current >> 32) != (generation & 0xffffffffu) || (int64_t)(current & 0xffffffffu) >= parts) return -1;
        if (atomic_compare_exchange_weak(&claims, &current, current + 1)) return (int64_t)(current & 0xffffffffu);
    }
}

static void finish_part(int64_t parts, int worker) {
    if (atomic_fetch_add(&done, 1) + 1 == parts && worker) {
        pthread_mutex_lock(&lock);
        if (caller_blocked) pthread_cond_signal(&finished);
        pthread_mutex_unlock(&lock);
    }
}

static void *worker_main(void *argument) {
    int thread = (int)(intptr_t)argument;
    uint64_t seen = 0;
    inside = 1;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (job_generation == seen) pthread_cond_wait(&wake, &lock);
        seen = job_generation;
        ParallelTask task = job_task;
        void *context = job_context;
        int64_t parts = job_parts, part;
        int eligible = thread < job_threads;
        pthread_mutex_unlock(&lock);
        while (eligible && (part = claim(seen, parts)) >= 0) {
            task(context, part, thread);
            finish_part(parts, 1);
        }
        pthread_mutex_lock(&lock);
    }
    return NULL;
}

static void reset_after_fork(void) {   /* the child has none of the workers: start them again when needed */
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&wake, NULL);
    pthread_cond_init(&finished, NULL);
    atomic_store(&started, 0);
    atomic_store(&busy, 0);
    caller_blocked = 0;
}

/* start workers up to the configured count (under the lock); the workers there are when it cannot start more */
static int start_workers(void) {
    static int registered = 0;
    if (!registered) {
        pthread_atfork(NULL, NULL, reset_after_fork);
        registered = 1;
    }
    int want = atomic_load(&configured) - 1, have = atomic_load(&started);
    for (; have < want; ++have) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&thread, &attributes, worker_main, (void *)(intptr_t)(have + 1));
        pthread_attr_destroy(&attributes);
        if (failed) break;
    }
    atomic_store(&started, have);
    return have;
}

void parallel_set_threads(int threads) {
    if (threads < 1) threads = 1;
    if (threads > PARALLEL_MAX_THREADS) threads = PARALLEL_MAX_THREADS;
    atomic_store(&configured, threads);   /* fewer: the extra workers stay, idle (parts go to the first ones only) */
}

int parallel_threads(void) { return atomic_load(&configured); }

void parallel_set_lag(int on) {
    atomic_store(&lag_on, on != 0);
    if (!on) atomic_store(&inline_until_ns, 0);
}

ParallelStats parallel_stats(void) {
    return (ParallelStats){atomic_load(&split_jobs), atomic_load(&inline_jobs), atomic_load(&lag_pauses)};
}

static void run_inline(ParallelTask task, void *context, int64_t parts) {
    if (parts > 1) atomic_fetch_add(&inline_jobs, 1);
    int was_inside = inside;
    inside = 1;
    for (int64_t part = 0; part < parts; ++part) task(context, part, 0);
    inside = was_inside;
}

/* the lag detector: the caller waited `waited` ns for workers after working `worked` ns itself */
static void note_wait(int64_t worked, int64_t waited, int64_t now) {
    if (!atomic_load(&lag_on) || waited <= worked || waited <= (int64_t)(LAG_SECONDS * 1e9)) return;
    atomic_fetch_add(&lag_pauses, 1);
    int64_t pause = atomic_load(&pause_ns), until = atomic_load(&inline_until_ns);
    if (now - until < (int64_t)(LAG_PAUSE_LAST * 1e9)) pause *= 2;   /* lagging again soon after the last pause */
    else pause /= 2;
    if (pause < (int64_t)(LAG_PAUSE_FIRST * 1e9)) pause = (int64_t)(LAG_PAUSE_FIRST * 1e9);
    if (pause > (int64_t)(LAG_PAUSE_LAST * 1e9)) pause = (int64_t)(LAG_PAUSE_LAST * 1e9);
    atomic_store(&pause_ns, pause);
    atomic_store(&inline_until_ns, now + pause);
}

void parallel_run(ParallelTask task, void *context, int64_t parts, int threads) {
    if (parts <= 0) return;
    if (parts == 1 || threads <= 1 || inside || parts > 0x7fffffff || now_ns() < atomic_load(&inline_until_ns)
        || atomic_exchange(&busy, 1)) {
        run_inline(task, context, parts);
        return;
    }
    pthread_mutex_lock(&lock);
    int workers = start_workers();
    if (workers > threads - 1) workers = threads - 1;
    if (workers < 1) {
        pthread_mutex_unlock(&lock);
        atomic_store(&busy, 0);
        run_inline(task, context, parts);
        return;
    }
    uint64_t generation = ++job_generation;
    job_task = task;
    job_context = context;
    job_parts = parts;
    job_threads = threads;
    atomic_store(&done, 0);
    atomic_store(&claims, (generation & 0xffffffffu) << 32);
    pthread_cond_broadcast(&wake);   /* a signal may wake a worker numbered past `threads`, which takes nothing */
    pthread_mutex_unlock(&lock);
    atomic_fetch_add(&split_jobs, 1);

    int64_t started_ns = now_ns(), part;
    inside = 1;
    while ((part = claim(generation, parts)) >= 0) {
        task(context, part, 0);
        finish_part(parts, 0);
    }
    inside = 0;
    int64_t worked_ns = now_ns(), deadline = worked_ns + (int64_t)(SPIN_SECONDS * 1e9);
    while (atomic_load(&done) < parts) {
        for (int i = 0; i < 64; ++i) relax();
        if (atomic_load(&done) >= parts || now_ns() >= deadline) break;
    }
    if (atomic_load(&done) < parts) {
        pthread_mutex_lock(&lock);
        caller_blocked = 1;
        while (atomic_load(&done) < parts) pthread_cond_wait(&finished, &lock);
        caller_blocked = 0;
        pthread_mutex_unlock(&lock);
    }
    int64_t end_ns = now_ns();
    note_wait(worked_ns - started_ns, end_ns - worked_ns, end_ns);
    atomic_store(&busy, 0);
}
#endif

int64_t parallel_parts(int64_t work, int64_t grain, int64_t per_thread) {
    int64_t parts = grain > 0 ? work / grain : 1, most = per_thread * parallel_threads();
    if (parts > most) parts = most;
    return parts < 1 ? 1 : parts;
}
