/*
 * reuseport_server: accept()+close() as fast as N pinned workers can, in one of three
 * listener layouts, and report per-worker counts as one JSON document on stdout.
 *
 *   reuseport_server --addr A --port P --mode shared|reuseport|reuseport-cbpf
 *                    --workers N [--cpus 0,1,...] [--backlog 4096] [--maxseg-tag]
 *
 * Why each piece is here (see docs/reuseport.md, facts measured on this machine):
 * - refuse a port that already has a listener: a leftover SO_REUSEPORT listener of the same
 *   user would silently join our group and take a share of the connections;
 * - a large backlog: the blog's listen(fd, 5) collapsed reuseport to 0.7k conn/s;
 * - sched_setaffinity for real (the blog called sched_getaffinity), and record the CPUs each
 *   worker really ran on;
 * - reuseport-cbpf: sockets join the group in CPU order, so the classic BPF program
 *   `ld [SKF_AD_OFF + SKF_AD_CPU]; ret A` picks the listener of the CPU that took the SYN.
 *
 * stderr: "listening port=P workers=N mode=M" once every worker is pinned and its socket
 * listens (the orchestrator waits for this line); errors, one line each, with strerror(errno).
 * Exit status: 0 after SIGTERM/SIGINT, 1 on a runtime error, 2 on a usage error or a busy port.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef SO_ATTACH_REUSEPORT_CBPF
#define SO_ATTACH_REUSEPORT_CBPF 51
#endif
#ifndef SO_INCOMING_CPU
#define SO_INCOMING_CPU 49
#endif

#define PROG "reuseport_server"
#define MAX_WORKERS 256
#define ERRNO_SLOTS 256 /* errno values >= this are counted in the last slot */
#define CPU_WORDS (CPU_SETSIZE / 64)
#define READY_TIMEOUT_NS (10 * 1000000000LL) /* workers must pin and report within this */
#define REAP_TIMEOUT_NS (5 * 1000000000LL)   /* then SIGKILL */
/* Backstop for the window between the stop-flag check and a blocking accept(): a signal
 * landing there is not lost for longer than this. Does not touch the hot path. */
#define ACCEPT_TIMEOUT_MS 100

/* The only global mutable state: set by signal handlers, read by the loops. */
static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t child_exited;

enum mode { MODE_SHARED, MODE_REUSEPORT, MODE_REUSEPORT_CBPF };
static const char *const mode_names[] = {"shared", "reuseport", "reuseport-cbpf"};

struct config {
    struct sockaddr_in addr;
    char addr_text[INET_ADDRSTRLEN];
    int port;
    enum mode mode;
    int workers;
    int cpus[CPU_SETSIZE];
    int ncpus;
    int backlog;
    bool maxseg_tag;
};

/* One per worker, in a MAP_SHARED mapping made before fork: the worker writes its own slot,
 * the parent reads it after reaping the worker. */
struct worker_stats {
    pid_t pid;
    int cpu_pinned;
    int exit_status; /* waitpid status, filled in by the parent */
    bool reaped;
    uint64_t accepts;
    uint64_t incoming_cpu_samples;
    uint64_t incoming_cpu_matches;
    uint64_t cpus_seen[CPU_WORDS];
    uint64_t errors[ERRNO_SLOTS];
};

static void on_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void on_child(int sig)
{
    (void)sig;
    child_exited = 1;
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL); /* EINTR just shortens the nap: callers re-check their flags */
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
    fprintf(stderr, " (usage: " PROG " --addr A --port P --mode shared|reuseport|reuseport-cbpf"
                    " --workers N [--cpus 0,1,...] [--backlog 4096] [--maxseg-tag])\n");
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
        {"addr", required_argument, NULL, 'a'},    {"port", required_argument, NULL, 'p'},
        {"mode", required_argument, NULL, 'm'},    {"workers", required_argument, NULL, 'w'},
        {"cpus", required_argument, NULL, 'c'},    {"backlog", required_argument, NULL, 'b'},
        {"maxseg-tag", no_argument, NULL, 't'},    {NULL, 0, NULL, 0},
    };
    memset(cfg, 0, sizeof *cfg);
    cfg->backlog = 4096;
    cfg->mode = -1;
    cfg->port = -1;
    cfg->workers = -1;
    bool have_addr = false;
    const char *cpus_text = NULL;
    long v;

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
            memset(&cfg->addr, 0, sizeof cfg->addr);
            cfg->addr.sin_family = AF_INET;
            if (inet_pton(AF_INET, optarg, &cfg->addr.sin_addr) != 1)
                usage_error("--addr %s is not an IPv4 address", optarg);
            snprintf(cfg->addr_text, sizeof cfg->addr_text, "%s", optarg);
            have_addr = true;
            break;
        case 'p':
            if (!parse_long(optarg, 1, 65535, &v))
                usage_error("--port %s is not in 1..65535", optarg);
            cfg->port = (int)v;
            break;
        case 'm':
            for (int i = 0; i < 3; i++)
                if (strcmp(optarg, mode_names[i]) == 0)
                    cfg->mode = (enum mode)i;
            if ((int)cfg->mode < 0)
                usage_error("--mode %s is not shared, reuseport or reuseport-cbpf", optarg);
            break;
        case 'w':
            if (!parse_long(optarg, 1, MAX_WORKERS, &v))
                usage_error("--workers %s is not in 1..256", optarg);
            cfg->workers = (int)v;
            break;
        case 'c':
            cpus_text = optarg;
            break;
        case 'b':
            if (!parse_long(optarg, 1, INT32_MAX, &v))
                usage_error("--backlog %s is not a positive integer", optarg);
            cfg->backlog = (int)v;
            break;
        case 't':
            cfg->maxseg_tag = true;
            break;
        default:
            usage_error("unknown option or missing argument: %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        usage_error("unexpected argument: %s", argv[optind]);
    if (!have_addr)
        usage_error("%s", "--addr is required");
    if (cfg->port < 0)
        usage_error("%s", "--port is required");
    if ((int)cfg->mode < 0)
        usage_error("%s", "--mode is required");
    if (cfg->workers < 0)
        usage_error("%s", "--workers is required");
    cfg->addr.sin_port = htons((uint16_t)cfg->port);

    if (cpus_text) {
        if (!parse_cpus(cpus_text, &allowed, cfg->cpus, &cfg->ncpus))
            usage_error("--cpus %s is not a list of CPUs this process may run on", cpus_text);
    } else {
        for (int c = 0; c < CPU_SETSIZE; c++)
            if (CPU_ISSET(c, &allowed))
                cfg->cpus[cfg->ncpus++] = c;
    }
    if (cfg->mode == MODE_REUSEPORT_CBPF) {
        /* The program returns the CPU number, which the kernel uses as the index of the
         * socket in the group: socket i must belong to the worker pinned to CPU i. */
        for (int i = 0; i < cfg->workers; i++)
            if (cfg->cpus[i % cfg->ncpus] != i)
                usage_error("%s", "--mode reuseport-cbpf needs worker i pinned to CPU i"
                                  " (--cpus 0,1,...,N-1, at most one worker per CPU)");
    }
}

/* Something already listening on A:P? A plain bind (SO_REUSEADDR, no SO_REUSEPORT) fails
 * with EADDRINUSE against any listener on A:P or on the wildcard address, whatever its
 * options; /proc/net/tcp{,6} then names it. Returns 1 busy (reason in why), 0 free, -1 error. */
static bool proc_listener(const char *path, const char *const *addrs, int naddrs, int port,
                          char *why, size_t whylen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false; /* no IPv6 in this kernel: nothing listens there */
    char line[512];
    bool found = false;
    if (!fgets(line, sizeof line, f)) { /* header */
        fclose(f);
        return false;
    }
    while (!found && fgets(line, sizeof line, f)) {
        char local[64];
        unsigned lport, state;
        if (sscanf(line, " %*d: %63[0-9A-Fa-f]:%x %*[0-9A-Fa-f]:%*x %x", local, &lport, &state) !=
            3)
            continue;
        if (state != 0x0A || (int)lport != port) /* 0x0A: TCP_LISTEN */
            continue;
        for (int i = 0; i < naddrs && !found; i++) {
            if (strcasecmp(local, addrs[i]) == 0) {
                snprintf(why, whylen, "%s shows a LISTEN socket on %s:%d", path, local, port);
                found = true;
            }
        }
    }
    fclose(f);
    return found;
}

static int port_busy(const struct config *cfg, char *why, size_t whylen)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, PROG ": socket: %s\n", strerror(errno));
        return -1;
    }
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
        fprintf(stderr, PROG ": setsockopt SO_REUSEADDR: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    int rc = bind(fd, (const struct sockaddr *)&cfg->addr, sizeof cfg->addr);
    int err = errno;
    close(fd);
    if (rc < 0 && err == EADDRINUSE) {
        snprintf(why, whylen, "bind %s:%d without SO_REUSEPORT: %s", cfg->addr_text, cfg->port,
                 strerror(err));
        return 1;
    }
    if (rc < 0) {
        fprintf(stderr, PROG ": bind %s:%d: %s\n", cfg->addr_text, cfg->port, strerror(err));
        return -1;
    }

    char mine[16], mapped[40];
    snprintf(mine, sizeof mine, "%08X", cfg->addr.sin_addr.s_addr);
    snprintf(mapped, sizeof mapped, "0000000000000000FFFF0000%08X", cfg->addr.sin_addr.s_addr);
    const char *v4[] = {mine, "00000000"};
    const char *v6[] = {mapped, "00000000000000000000000000000000"};
    if (proc_listener("/proc/net/tcp", v4, 2, cfg->port, why, whylen) ||
        proc_listener("/proc/net/tcp6", v6, 2, cfg->port, why, whylen))
        return 1;
    return 0;
}

static int make_listener(const struct config *cfg, bool reuseport, int maxseg)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, PROG ": socket: %s\n", strerror(errno));
        return -1;
    }
    int one = 1;
    struct timeval tv = {0, ACCEPT_TIMEOUT_MS * 1000};
    const char *what = NULL;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
        what = "setsockopt SO_REUSEADDR";
    else if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
        what = "setsockopt SO_REUSEPORT";
    else if (maxseg > 0 && setsockopt(fd, IPPROTO_TCP, TCP_MAXSEG, &maxseg, sizeof maxseg) < 0)
        what = "setsockopt TCP_MAXSEG";
    else if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        what = "setsockopt SO_RCVTIMEO";
    else if (bind(fd, (const struct sockaddr *)&cfg->addr, sizeof cfg->addr) < 0)
        what = "bind";
    else if (listen(fd, cfg->backlog) < 0)
        what = "listen";
    if (what) {
        fprintf(stderr, PROG ": %s %s:%d: %s\n", what, cfg->addr_text, cfg->port,
                strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int attach_cpu_program(int fd)
{
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)(SKF_AD_OFF + SKF_AD_CPU)),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) < 0) {
        fprintf(stderr, PROG ": setsockopt SO_ATTACH_REUSEPORT_CBPF: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

static int run_worker(int index, int fd, int cpu, struct worker_stats *st, int ready_fd)
{
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0) {
        fprintf(stderr, PROG ": worker %d: sigprocmask: %s\n", index, strerror(errno));
        return 1;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) {
        fprintf(stderr, PROG ": worker %d: sched_setaffinity cpu %d: %s\n", index, cpu,
                strerror(errno));
        return 1;
    }
    if (write(ready_fd, "r", 1) != 1) {
        fprintf(stderr, PROG ": worker %d: write ready pipe: %s\n", index, strerror(errno));
        return 1;
    }
    close(ready_fd);

    while (!stop_requested) {
        int conn = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
        if (conn < 0) {
            int err = errno;
            if (err == EINTR || err == EAGAIN || err == EWOULDBLOCK)
                continue; /* a signal, or the SO_RCVTIMEO backstop: re-check the flag */
            st->errors[err < ERRNO_SLOTS ? err : ERRNO_SLOTS - 1]++;
            if (err == EBADF || err == EINVAL || err == ENOTSOCK || err == EFAULT) {
                fprintf(stderr, PROG ": worker %d: accept: %s\n", index, strerror(err));
                return 1;
            }
            if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM)
                sleep_ms(1); /* out of resources: don't spin */
            continue;
        }
        int ran_on = sched_getcpu();
        st->accepts++;
        if (ran_on >= 0 && ran_on < CPU_SETSIZE)
            st->cpus_seen[ran_on / 64] |= UINT64_C(1) << (ran_on % 64);
        int incoming = -1;
        socklen_t len = sizeof incoming;
        if (getsockopt(conn, SOL_SOCKET, SO_INCOMING_CPU, &incoming, &len) == 0 &&
            incoming >= 0) {
            st->incoming_cpu_samples++;
            if (incoming == ran_on)
                st->incoming_cpu_matches++;
        }
        close(conn);
    }
    return 0;
}

static int read_somaxconn(void)
{
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "r");
    if (!f) {
        fprintf(stderr, PROG ": /proc/sys/net/core/somaxconn: %s\n", strerror(errno));
        return -1;
    }
    int v = -1;
    if (fscanf(f, "%d", &v) != 1)
        v = -1;
    fclose(f);
    return v;
}

static void print_errors(const uint64_t *errors)
{
    printf("{");
    bool first = true;
    for (int e = 1; e < ERRNO_SLOTS; e++) {
        if (!errors[e])
            continue;
        printf("%s\"%s\":%" PRIu64, first ? "" : ",", errno_name(e), errors[e]);
        first = false;
    }
    printf("}");
}

static int print_report(const struct config *cfg, const struct worker_stats *stats,
                        int somaxconn, double duration_s)
{
    uint64_t total = 0;
    printf("{\"mode\":\"%s\",\"port\":%d,\"addr\":\"%s\",\"backlog\":%d,", mode_names[cfg->mode],
           cfg->port, cfg->addr_text, cfg->backlog);
    if (somaxconn >= 0)
        printf("\"somaxconn\":%d,", somaxconn);
    else
        printf("\"somaxconn\":null,");
    printf("\"workers\":[");
    for (int i = 0; i < cfg->workers; i++) {
        const struct worker_stats *st = &stats[i];
        printf("%s{\"worker\":%d,\"pid\":%d,\"cpu_pinned\":%d,\"cpus_seen\":[", i ? "," : "", i,
               (int)st->pid, st->cpu_pinned);
        bool first = true;
        for (int c = 0; c < CPU_SETSIZE; c++) {
            if (st->cpus_seen[c / 64] & (UINT64_C(1) << (c % 64))) {
                printf("%s%d", first ? "" : ",", c);
                first = false;
            }
        }
        printf("],\"accepts\":%" PRIu64 ",\"incoming_cpu_samples\":%" PRIu64
               ",\"incoming_cpu_matches\":%" PRIu64 ",\"errors\":",
               st->accepts, st->incoming_cpu_samples, st->incoming_cpu_matches);
        print_errors(st->errors);
        printf("}");
        total += st->accepts;
    }
    printf("],\"accepts_total\":%" PRIu64 ",\"duration_s\":%.3f}\n", total, duration_s);
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, PROG ": writing the report to stdout: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* Reap what has exited; returns how many workers are still running. */
static int reap(struct worker_stats *stats, int n, bool report_unexpected)
{
    int running = 0;
    for (int i = 0; i < n; i++) {
        if (stats[i].pid <= 0 || stats[i].reaped)
            continue;
        int status;
        pid_t r = waitpid(stats[i].pid, &status, WNOHANG);
        if (r == stats[i].pid) {
            stats[i].reaped = true;
            stats[i].exit_status = status;
            if (report_unexpected)
                fprintf(stderr, PROG ": worker %d (pid %d) ended before the stop signal: %s %d\n",
                        i, (int)stats[i].pid, WIFSIGNALED(status) ? "signal" : "exit status",
                        WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        } else if (r < 0 && errno != EINTR) {
            fprintf(stderr, PROG ": waitpid %d: %s\n", (int)stats[i].pid, strerror(errno));
            stats[i].reaped = true;
            stats[i].exit_status = -1;
        } else {
            running++;
        }
    }
    return running;
}

/* TERM every worker, wait a bounded time, then KILL the rest. */
static void stop_workers(struct worker_stats *stats, int n)
{
    for (int i = 0; i < n; i++)
        if (stats[i].pid > 0 && !stats[i].reaped && kill(stats[i].pid, SIGTERM) < 0 &&
            errno != ESRCH)
            fprintf(stderr, PROG ": kill %d: %s\n", (int)stats[i].pid, strerror(errno));
    int64_t deadline = now_ns() + REAP_TIMEOUT_NS;
    while (reap(stats, n, false) > 0 && now_ns() < deadline)
        sleep_ms(5);
    for (int i = 0; i < n; i++) {
        if (stats[i].pid <= 0 || stats[i].reaped)
            continue;
        fprintf(stderr, PROG ": worker %d (pid %d) ignored SIGTERM for 5 s: SIGKILL\n", i,
                (int)stats[i].pid);
        if (kill(stats[i].pid, SIGKILL) < 0 && errno != ESRCH)
            fprintf(stderr, PROG ": kill %d: %s\n", (int)stats[i].pid, strerror(errno));
        int status;
        while (waitpid(stats[i].pid, &status, 0) < 0 && errno == EINTR)
            ; /* SIGKILL cannot be ignored: this ends */
        stats[i].reaped = true;
        stats[i].exit_status = status;
    }
}

int main(int argc, char **argv)
{
    struct config cfg;
    parse_args(argc, argv, &cfg);

    char why[256];
    int busy = port_busy(&cfg, why, sizeof why);
    if (busy < 0)
        return 1;
    if (busy > 0) {
        fprintf(stderr, PROG ": port %d already has a listener (%s)\n", cfg.port, why);
        return 2;
    }
    int somaxconn = read_somaxconn();

    size_t map_len = sizeof(struct worker_stats) * (size_t)cfg.workers;
    struct worker_stats *stats =
        mmap(NULL, map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (stats == MAP_FAILED) {
        fprintf(stderr, PROG ": mmap %zu bytes: %s\n", map_len, strerror(errno));
        return 1;
    }
    memset(stats, 0, map_len);

    /* Handlers without SA_RESTART, so a blocking accept() returns EINTR. TERM, INT and CHLD
     * stay blocked in the parent except inside ppoll/sigsuspend: no wake-up is lost. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    sigset_t blocked, waitmask;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &blocked, &waitmask) < 0 || sigaction(SIGTERM, &sa, NULL) < 0 ||
        sigaction(SIGINT, &sa, NULL) < 0) {
        fprintf(stderr, PROG ": installing signal handlers: %s\n", strerror(errno));
        return 1;
    }
    sa.sa_handler = on_child;
    sa.sa_flags = SA_NOCLDSTOP;
    if (sigaction(SIGCHLD, &sa, NULL) < 0) {
        fprintf(stderr, PROG ": sigaction SIGCHLD: %s\n", strerror(errno));
        return 1;
    }
    sigdelset(&waitmask, SIGTERM);
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGCHLD);

    /* All listeners are made here, before fork, in worker (= CPU) order: in the reuseport
     * modes the kernel appends each socket to the group at listen(), so socket i has index
     * i in the group, which is what the cBPF program's CPU number selects. */
    int nfds = cfg.mode == MODE_SHARED ? 1 : cfg.workers;
    int fds[MAX_WORKERS];
    for (int i = 0; i < nfds; i++) {
        int maxseg = cfg.maxseg_tag ? 1000 + i : 0;
        fds[i] = make_listener(&cfg, cfg.mode != MODE_SHARED, maxseg);
        if (fds[i] < 0) {
            for (int j = 0; j < i; j++)
                close(fds[j]);
            return 1;
        }
    }
    if (cfg.mode == MODE_REUSEPORT_CBPF && attach_cpu_program(fds[0]) < 0) {
        for (int i = 0; i < nfds; i++)
            close(fds[i]);
        return 1;
    }

    int ready[2];
    if (pipe2(ready, O_CLOEXEC) < 0) {
        fprintf(stderr, PROG ": pipe: %s\n", strerror(errno));
        return 1;
    }
    fflush(NULL); /* nothing buffered may be written twice by the children */
    int failed = 0;
    int forked = 0;
    for (int i = 0; i < cfg.workers; i++) {
        stats[i].cpu_pinned = cfg.cpus[i % cfg.ncpus];
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, PROG ": fork worker %d: %s\n", i, strerror(errno));
            failed = 1;
            break;
        }
        if (pid == 0) {
            close(ready[0]);
            int mine = cfg.mode == MODE_SHARED ? 0 : i;
            for (int j = 0; j < nfds; j++)
                if (j != mine)
                    close(fds[j]);
            _exit(run_worker(i, fds[mine], stats[i].cpu_pinned, &stats[i], ready[1]));
        }
        stats[i].pid = pid;
        forked++;
    }
    close(ready[1]);
    for (int i = 0; i < nfds; i++)
        close(fds[i]); /* the workers hold them now: a worker's exit closes its socket */

    /* Wait until every worker is pinned (its socket already listens). */
    int got = 0;
    int64_t deadline = now_ns() + READY_TIMEOUT_NS;
    while (!failed && got < forked && !stop_requested) {
        int64_t left = deadline - now_ns();
        if (left <= 0) {
            fprintf(stderr, PROG ": only %d of %d workers ready after 10 s\n", got, forked);
            failed = 1;
            break;
        }
        struct pollfd pfd = {ready[0], POLLIN, 0};
        struct timespec ts = {left / 1000000000LL, left % 1000000000LL};
        int r = ppoll(&pfd, 1, &ts, &waitmask);
        if (r < 0 && errno != EINTR) {
            fprintf(stderr, PROG ": ppoll: %s\n", strerror(errno));
            failed = 1;
        } else if (r > 0) {
            char buf[MAX_WORKERS];
            ssize_t n = read(ready[0], buf, sizeof buf);
            if (n > 0) {
                got += (int)n;
            } else if (n == 0) {
                fprintf(stderr, PROG ": a worker exited before it was ready\n");
                failed = 1;
            } else if (errno != EINTR) {
                fprintf(stderr, PROG ": read ready pipe: %s\n", strerror(errno));
                failed = 1;
            }
        }
    }
    close(ready[0]);

    int64_t started = now_ns();
    if (!failed && !stop_requested) {
        fprintf(stderr, "listening port=%d workers=%d mode=%s\n", cfg.port, cfg.workers,
                mode_names[cfg.mode]);
        while (!stop_requested) {
            sigsuspend(&waitmask);
            /* A TERM to the whole group reaches the parent before any worker can exit, and
             * pending signals are all handled before sigsuspend returns: check stop first. */
            if (child_exited && !stop_requested) {
                child_exited = 0;
                if (reap(stats, forked, true) < forked) {
                    failed = 1; /* a restarted worker would break the cBPF CPU mapping */
                    break;
                }
            }
        }
    }
    int64_t stopped = now_ns();

    stop_workers(stats, forked);
    for (int i = 0; i < forked; i++) {
        int st = stats[i].exit_status;
        if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0) &&
            !(WIFSIGNALED(st) && (WTERMSIG(st) == SIGTERM || WTERMSIG(st) == SIGINT)))
            failed = 1;
    }
    double duration = (double)(stopped - started) / 1e9;
    if (print_report(&cfg, stats, somaxconn, duration < 0 ? 0 : duration) < 0)
        failed = 1;
    munmap(stats, map_len);
    return failed ? 1 : 0;
}
