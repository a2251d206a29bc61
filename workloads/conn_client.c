/*
 * conn_client: open TCP connections as fast as the server accepts them, for a fixed time,
 * and report the rate, connect latency and errors as one JSON document on stdout.
 *
 *   conn_client --addr A --port P [--threads T] [--cpus 0,1] [--inflight K] --duration S
 *               [--wait-fin] [--bind-no-port] [--src ADDR]
 *
 * Each of T pinned threads keeps K non-blocking connects in flight under its own epoll.
 * A connection counts once connect() completed (EPOLLOUT, SO_ERROR 0), or with --wait-fin
 * once the server's FIN arrived (read() == 0), so the rate measures accept capacity.
 * Every socket has SO_LINGER {1,0}: close() sends RST and leaves no TIME_WAIT (without it
 * ~10k TIME_WAIT sockets piled up and rates dropped, docs/reuseport.md).
 * getsockopt(TCP_MAXSEG) of each connected socket goes into a small histogram: a server
 * started with --maxseg-tag advertises 1000 + worker, read here as 988 + worker (the 12-byte
 * timestamp option), which tells which worker accepted.
 *
 * Exit status: 0 with the report, 1 on a runtime error, 2 on a usage error.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define PROG "conn_client"
#define MAX_THREADS 256
#define MAX_INFLIGHT 65536
#define ERRNO_SLOTS 256 /* errno values >= this are counted in the last slot */
#define MAXSEG_SLOTS 64 /* distinct TCP_MAXSEG values kept; more go to "other" */
#define POLL_CAP_MS 100 /* how late a thread may notice the stop flag or an abort */

/* Latency histogram, microseconds: exact below 64, then 32 buckets per power of two
 * (at most ~3% wide), up to 2^63. */
#define LAT_SUB_BITS 5
#define LAT_EXACT 64
#define LAT_BUCKETS (LAT_EXACT + (63 - 6 + 1) * (1 << LAT_SUB_BITS))

/* The only global mutable state: set by the SIGINT/SIGTERM handler. */
static volatile sig_atomic_t stop_requested;

struct config {
    struct sockaddr_in dst;
    struct sockaddr_in src;
    char addr_text[INET_ADDRSTRLEN];
    bool have_src;
    int threads;
    int cpus[CPU_SETSIZE];
    int ncpus;
    int inflight;
    double duration;
    bool wait_fin;
    bool bind_no_port;
};

/* Shared by all threads: read-only except `abort`, which a failing thread sets. */
struct run {
    const struct config *cfg;
    int64_t deadline_ns;
    atomic_int abort;
};

enum slot_state { SLOT_IDLE, SLOT_CONNECTING, SLOT_WAIT_FIN };

struct slot {
    int fd;
    enum slot_state state;
    int64_t started_ns;
};

struct maxseg_count {
    int value;
    uint64_t count;
};

struct worker {
    struct run *run;
    int index;
    int cpu;
    pthread_t thread;
    bool started;
    int failed;
    int epfd;
    struct slot *slots;
    int idle;
    uint64_t connections;
    uint64_t errors[ERRNO_SLOTS];
    uint64_t latency[LAT_BUCKETS];
    struct maxseg_count maxseg[MAXSEG_SLOTS];
    int nmaxseg;
    uint64_t maxseg_other;
};

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const char *errno_name(int err)
{
    const char *name = strerrorname_np(err);
    return name ? name : "EUNKNOWN";
}

static void usage_error(const char *fmt, const char *arg)
{
    fprintf(stderr, PROG ": ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (usage: " PROG " --addr A --port P [--threads T] [--cpus 0,1]"
                    " [--inflight K] --duration S [--wait-fin] [--bind-no-port] [--src ADDR])\n");
    exit(2);
}

static bool parse_long(const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

/* "0,1,3" or "0-3,6": CPUs in the given order; each must be in our affinity mask. */
static bool parse_cpus(const char *text, const cpu_set_t *allowed, int *cpus, int *ncpus)
{
    char buf[4096];
    if (strlen(text) >= sizeof buf)
        return false;
    strcpy(buf, text);
    *ncpus = 0;
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        long lo, hi;
        char *dash = strchr(tok, '-');
        if (dash) {
            *dash = '\0';
            if (!parse_long(tok, 0, CPU_SETSIZE - 1, &lo) ||
                !parse_long(dash + 1, 0, CPU_SETSIZE - 1, &hi) || hi < lo)
                return false;
        } else {
            if (!parse_long(tok, 0, CPU_SETSIZE - 1, &lo))
                return false;
            hi = lo;
        }
        for (long c = lo; c <= hi; c++) {
            if (!CPU_ISSET((int)c, allowed) || *ncpus >= CPU_SETSIZE)
                return false;
            cpus[(*ncpus)++] = (int)c;
        }
    }
    return *ncpus > 0;
}

static void parse_args(int argc, char **argv, struct config *cfg)
{
    static const struct option opts[] = {
        {"addr", required_argument, NULL, 'a'},     {"port", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, 't'},  {"cpus", required_argument, NULL, 'c'},
        {"inflight", required_argument, NULL, 'k'}, {"duration", required_argument, NULL, 'd'},
        {"wait-fin", no_argument, NULL, 'f'},       {"bind-no-port", no_argument, NULL, 'n'},
        {"src", required_argument, NULL, 's'},      {NULL, 0, NULL, 0},
    };
    memset(cfg, 0, sizeof *cfg);
    cfg->threads = 1;
    cfg->inflight = 16;
    cfg->duration = -1;
    bool have_addr = false, have_port = false;
    const char *cpus_text = NULL;
    long v;
    char *end;

    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    if (sched_getaffinity(0, sizeof allowed, &allowed) < 0) {
        fprintf(stderr, PROG ": sched_getaffinity: %s\n", strerror(errno));
        exit(1);
    }

    opterr = 0; /* one line of our own on stderr, not getopt's */
    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'a':
            cfg->dst.sin_family = AF_INET;
            if (inet_pton(AF_INET, optarg, &cfg->dst.sin_addr) != 1)
                usage_error("--addr %s is not an IPv4 address", optarg);
            snprintf(cfg->addr_text, sizeof cfg->addr_text, "%s", optarg);
            have_addr = true;
            break;
        case 'p':
            if (!parse_long(optarg, 1, 65535, &v))
                usage_error("--port %s is not in 1..65535", optarg);
            cfg->dst.sin_port = htons((uint16_t)v);
            have_port = true;
            break;
        case 't':
            if (!parse_long(optarg, 1, MAX_THREADS, &v))
                usage_error("--threads %s is not in 1..256", optarg);
            cfg->threads = (int)v;
            break;
        case 'c':
            cpus_text = optarg;
            break;
        case 'k':
            if (!parse_long(optarg, 1, MAX_INFLIGHT, &v))
                usage_error("--inflight %s is not in 1..65536", optarg);
            cfg->inflight = (int)v;
            break;
        case 'd':
            errno = 0;
            cfg->duration = strtod(optarg, &end);
            /* written so that NaN fails too */
            if (errno != 0 || end == optarg || *end != '\0' ||
                !(cfg->duration > 0 && cfg->duration <= 86400))
                usage_error("--duration %s is not a number of seconds in (0, 86400]", optarg);
            break;
        case 'f':
            cfg->wait_fin = true;
            break;
        case 'n':
            cfg->bind_no_port = true;
            break;
        case 's':
            cfg->src.sin_family = AF_INET;
            if (inet_pton(AF_INET, optarg, &cfg->src.sin_addr) != 1)
                usage_error("--src %s is not an IPv4 address", optarg);
            cfg->have_src = true;
            break;
        default:
            usage_error("unknown option or missing argument: %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument: %s", argv[optind]);
    if (!have_addr)
        usage_error("%s", "--addr is required");
    if (!have_port)
        usage_error("%s", "--port is required");
    if (cfg->duration < 0)
        usage_error("%s", "--duration is required");
    if (cpus_text) {
        if (!parse_cpus(cpus_text, &allowed, cfg->cpus, &cfg->ncpus))
            usage_error("--cpus %s is not a list of CPUs this process may run on", cpus_text);
    } else {
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &allowed))
                cfg->cpus[cfg->ncpus++] = c;
    }
}

/* Each connection holds one descriptor: make sure T*K of them (plus slack) fit. */
static void ensure_fd_limit(const struct config *cfg)
{
    rlim_t need = (rlim_t)cfg->threads * (rlim_t)cfg->inflight + (rlim_t)cfg->threads + 64;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
        fprintf(stderr, PROG ": getrlimit RLIMIT_NOFILE: %s\n", strerror(errno));
        exit(1);
    }
    if (rl.rlim_cur >= need)
        return;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
        char text[96];
        snprintf(text, sizeof text, "%llu", (unsigned long long)rl.rlim_max);
        usage_error("threads x inflight needs more descriptors than RLIMIT_NOFILE allows (%s)",
                    text);
    }
    rl.rlim_cur = need;
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        fprintf(stderr, PROG ": setrlimit RLIMIT_NOFILE: %s\n", strerror(errno));
        exit(1);
    }
}

static int latency_bucket(uint64_t us)
{
    if (us < LAT_EXACT)
        return (int)us;
    int msb = 63 - __builtin_clzll(us);
    int shift = msb - LAT_SUB_BITS;
    int sub = (int)((us >> shift) - (UINT64_C(1) << LAT_SUB_BITS));
    return LAT_EXACT + (msb - 6) * (1 << LAT_SUB_BITS) + sub;
}

/* A representative value of a bucket: its midpoint. */
static double latency_value(int bucket)
{
    if (bucket < LAT_EXACT)
        return bucket;
    int octave = (bucket - LAT_EXACT) >> LAT_SUB_BITS;
    int sub = (bucket - LAT_EXACT) & ((1 << LAT_SUB_BITS) - 1);
    int shift = octave + 6 - LAT_SUB_BITS;
    double low = (double)((UINT64_C(1) << LAT_SUB_BITS) + (uint64_t)sub) * (double)(UINT64_C(1) << shift);
    return low + (double)(UINT64_C(1) << shift) / 2.0;
}

static void count_error(struct worker *w, int err)
{
    w->errors[err > 0 && err < ERRNO_SLOTS ? err : ERRNO_SLOTS - 1]++;
}

static void record_maxseg(struct worker *w, int fd)
{
    int mss = 0;
    socklen_t len = sizeof mss;
    if (getsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &mss, &len) < 0)
        return; /* the connection may already be reset: nothing to learn */
    for (int i = 0; i < w->nmaxseg; i++) {
        if (w->maxseg[i].value == mss) {
            w->maxseg[i].count++;
            return;
        }
    }
    if (w->nmaxseg < MAXSEG_SLOTS) {
        w->maxseg[w->nmaxseg].value = mss;
        w->maxseg[w->nmaxseg].count = 1;
        w->nmaxseg++;
    } else {
        w->maxseg_other++;
    }
}

static void fail(struct worker *w, const char *what)
{
    fprintf(stderr, PROG ": thread %d: %s: %s\n", w->index, what, strerror(errno));
    w->failed = 1;
    atomic_store(&w->run->abort, 1);
}

/* close() with SO_LINGER {1,0} set: RST, no TIME_WAIT; the kernel drops it from epoll. */
static void slot_close(struct worker *w, struct slot *s)
{
    close(s->fd);
    s->fd = -1;
    s->state = SLOT_IDLE;
    w->idle++;
}

static void connected(struct worker *w, struct slot *s, uint32_t index, bool registered)
{
    int64_t elapsed = now_ns() - s->started_ns;
    w->latency[latency_bucket(elapsed > 0 ? (uint64_t)elapsed / 1000 : 0)]++;
    record_maxseg(w, s->fd);
    if (!w->run->cfg->wait_fin) {
        w->connections++;
        slot_close(w, s);
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP, .data.u32 = index};
    if (epoll_ctl(w->epfd, registered ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, s->fd, &ev) < 0) {
        fail(w, "epoll_ctl");
        slot_close(w, s);
        return;
    }
    s->state = SLOT_WAIT_FIN;
}

/* Start one connect on an idle slot. Failures are counted and leave the slot idle (the
 * main loop retries it after a short wait, so a persistent failure cannot spin). */
static void slot_start(struct worker *w, uint32_t index)
{
    const struct config *cfg = w->run->cfg;
    struct slot *s = &w->slots[index];
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        count_error(w, errno); /* EMFILE, ENOBUFS...: keep going, bounded by the clock */
        return;
    }
    struct linger lg = {1, 0};
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0) {
        fail(w, "setsockopt SO_LINGER");
        close(fd);
        return;
    }
    if (cfg->bind_no_port && setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one) < 0) {
        fail(w, "setsockopt IP_BIND_ADDRESS_NO_PORT");
        close(fd);
        return;
    }
    if (cfg->bind_no_port || cfg->have_src) {
        struct sockaddr_in src = cfg->src;
        src.sin_family = AF_INET;
        src.sin_port = 0;
        if (bind(fd, (const struct sockaddr *)&src, sizeof src) < 0) {
            count_error(w, errno); /* EADDRINUSE/EADDRNOTAVAIL: out of ports */
            close(fd);
            return;
        }
    }
    s->fd = fd;
    s->started_ns = now_ns();
    w->idle--;
    if (connect(fd, (const struct sockaddr *)&cfg->dst, sizeof cfg->dst) == 0) {
        connected(w, s, index, false);
        return;
    }
    if (errno != EINPROGRESS) {
        count_error(w, errno);
        slot_close(w, s);
        return;
    }
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = index};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        fail(w, "epoll_ctl");
        slot_close(w, s);
        return;
    }
    s->state = SLOT_CONNECTING;
}

static void handle_event(struct worker *w, uint32_t index, uint32_t events)
{
    struct slot *s = &w->slots[index];
    if (s->state == SLOT_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) {
            fail(w, "getsockopt SO_ERROR");
            slot_close(w, s);
            return;
        }
        if (err == 0 && (events & EPOLLOUT)) {
            connected(w, s, index, true);
        } else {
            count_error(w, err ? err : ECONNRESET); /* a hang-up without an error: a reset */
            slot_close(w, s);
        }
    } else if (s->state == SLOT_WAIT_FIN) {
        char buf[256];
        ssize_t n = read(s->fd, buf, sizeof buf);
        if (n == 0) {
            w->connections++; /* the server accepted and closed: its FIN is here */
            slot_close(w, s);
        } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            count_error(w, errno);
            slot_close(w, s);
        }
        /* n > 0: the server sent data; keep waiting for its FIN */
    }
    if (s->state == SLOT_IDLE && !atomic_load(&w->run->abort))
        slot_start(w, index);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    const struct config *cfg = w->run->cfg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->cpu, &set);
    errno = pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    if (errno != 0) {
        fail(w, "sched_setaffinity");
        return NULL;
    }
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0) {
        fail(w, "epoll_create1");
        return NULL;
    }
    int k = cfg->inflight;
    w->slots = calloc((size_t)k, sizeof *w->slots);
    struct epoll_event *events = calloc((size_t)k, sizeof *events);
    if (!w->slots || !events) {
        fail(w, "calloc");
        free(events);
        return NULL;
    }
    for (int i = 0; i < k; i++) {
        w->slots[i].fd = -1;
        w->slots[i].state = SLOT_IDLE;
    }
    w->idle = k;

    int64_t now;
    while (!stop_requested && !atomic_load(&w->run->abort) &&
           (now = now_ns()) < w->run->deadline_ns) {
        if (w->idle > 0)
            for (int i = 0; i < k; i++)
                if (w->slots[i].state == SLOT_IDLE)
                    slot_start(w, (uint32_t)i);
        int64_t left_ms = (w->run->deadline_ns - now) / 1000000 + 1;
        int timeout = w->idle > 0 ? 1 : (int)(left_ms < POLL_CAP_MS ? left_ms : POLL_CAP_MS);
        int n = epoll_wait(w->epfd, events, k, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fail(w, "epoll_wait");
            break;
        }
        for (int i = 0; i < n; i++)
            handle_event(w, events[i].data.u32, events[i].events);
    }
    for (int i = 0; i < k; i++)
        if (w->slots[i].state != SLOT_IDLE)
            slot_close(w, &w->slots[i]);
    free(events);
    close(w->epfd);
    return NULL;
}

static void print_report(const struct config *cfg, struct worker *ws, double duration_s)
{
    uint64_t connections = 0, errors[ERRNO_SLOTS] = {0}, latency_total = 0;
    static const int named[] = {ECONNREFUSED, ETIMEDOUT, ECONNRESET, EADDRNOTAVAIL};
    for (int t = 0; t < cfg->threads; t++) {
        connections += ws[t].connections;
        for (int e = 0; e < ERRNO_SLOTS; e++)
            errors[e] += ws[t].errors[e];
        for (int b = 0; b < LAT_BUCKETS; b++) {
            if (t > 0)
                ws[0].latency[b] += ws[t].latency[b];
            latency_total += ws[t].latency[b];
        }
    }
    printf("{\"connections\":%" PRIu64 ",\"duration_s\":%.3f,\"rate\":%.1f,\"threads\":%d,"
           "\"inflight\":%d,\"errors\":{",
           connections, duration_s, duration_s > 0 ? (double)connections / duration_s : 0.0,
           cfg->threads, cfg->inflight);
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        printf("%s\"%s\":%" PRIu64, i ? "," : "", errno_name(named[i]), errors[named[i]]);
        errors[named[i]] = 0;
    }
    for (int e = 1; e < ERRNO_SLOTS; e++)
        if (errors[e])
            printf(",\"%s\":%" PRIu64, errno_name(e), errors[e]);
    printf("},\"latency_us\":{");
    const uint64_t percent[] = {50, 99};
    const char *names[] = {"p50", "p99"};
    for (int q = 0; q < 2; q++) {
        printf("%s\"%s\":", q ? "," : "", names[q]);
        if (latency_total == 0) {
            printf("null");
            continue;
        }
        uint64_t rank = (latency_total * percent[q] + 99) / 100, seen = 0; /* ceil */
        for (int b = 0; b < LAT_BUCKETS; b++) {
            seen += ws[0].latency[b];
            if (seen >= rank) {
                printf("%.0f", latency_value(b));
                break;
            }
        }
    }
    printf("},\"maxseg\":{");
    /* Merge the per-thread tables; values are few (one per tagged worker). */
    struct maxseg_count merged[MAXSEG_SLOTS * 2];
    int nmerged = 0;
    uint64_t other = 0;
    for (int t = 0; t < cfg->threads; t++) {
        other += ws[t].maxseg_other;
        for (int i = 0; i < ws[t].nmaxseg; i++) {
            int j = 0;
            while (j < nmerged && merged[j].value != ws[t].maxseg[i].value)
                j++;
            if (j < nmerged) {
                merged[j].count += ws[t].maxseg[i].count;
            } else if (nmerged < MAXSEG_SLOTS) {
                merged[nmerged++] = ws[t].maxseg[i];
            } else {
                other += ws[t].maxseg[i].count;
            }
        }
    }
    for (int i = 0; i < nmerged; i++)
        printf("%s\"%d\":%" PRIu64, i ? "," : "", merged[i].value, merged[i].count);
    if (other)
        printf("%s\"other\":%" PRIu64, nmerged ? "," : "", other);
    printf("}}\n");
}

int main(int argc, char **argv)
{
    struct config cfg;
    parse_args(argc, argv, &cfg);
    ensure_fd_limit(&cfg);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop; /* no SA_RESTART: epoll_wait returns EINTR */
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0) {
        fprintf(stderr, PROG ": sigaction: %s\n", strerror(errno));
        return 1;
    }

    struct worker *ws = calloc((size_t)cfg.threads, sizeof *ws);
    if (!ws) {
        fprintf(stderr, PROG ": calloc: %s\n", strerror(errno));
        return 1;
    }
    struct run run = {.cfg = &cfg};
    atomic_init(&run.abort, 0);
    int64_t started = now_ns();
    run.deadline_ns = started + (int64_t)(cfg.duration * 1e9);
    int failed = 0;
    for (int t = 0; t < cfg.threads; t++) {
        ws[t].run = &run;
        ws[t].index = t;
        ws[t].cpu = cfg.cpus[t % cfg.ncpus];
        int err = pthread_create(&ws[t].thread, NULL, worker_main, &ws[t]);
        if (err != 0) {
            fprintf(stderr, PROG ": pthread_create: %s\n", strerror(err));
            atomic_store(&run.abort, 1);
            failed = 1;
            break;
        }
        ws[t].started = true;
    }
    for (int t = 0; t < cfg.threads; t++) {
        if (!ws[t].started)
            continue;
        int err = pthread_join(ws[t].thread, NULL);
        if (err != 0) {
            fprintf(stderr, PROG ": pthread_join: %s\n", strerror(err));
            failed = 1;
        }
        failed |= ws[t].failed;
        free(ws[t].slots);
    }
    double duration = (double)(now_ns() - started) / 1e9;
    if (!failed) {
        print_report(&cfg, ws, duration);
        if (fflush(stdout) != 0 || ferror(stdout)) {
            fprintf(stderr, PROG ": writing the report to stdout: %s\n", strerror(errno));
            failed = 1;
        }
    }
    free(ws);
    return failed ? 1 : 0;
}
