/*
 * codeexec jail init: pid 1 of a persistent nsjail jail, which starts each run.
 *
 * nsjail builds the jail (mount and pid namespaces, uid, seccomp, no capabilities)
 * once per slot and executes this program as the jail's pid 1; the slot server then
 * sends it one "run" per program over the SOCK_SEQPACKET socket on fd 3, with the
 * run's stdin, stdout and stderr attached (SCM_RIGHTS). Per run it forks, lowers the
 * child's rlimits, executes the program, waits for it, then kills every process left
 * in the jail (kill(-1) from pid 1 reaches all of them and nothing outside), reaps
 * them and removes the SysV IPC objects of its namespace, so the next run starts in an
 * empty jail.
 *
 * The init never shares its identity with the programs. It runs as uid 0 holding only
 * CAP_SETUID, CAP_SETGID, CAP_SETPCAP and CAP_KILL; each program's process empties its
 * capability bounding set, becomes the run's uid and gid (which clears every other
 * capability), sets no_new_privs and installs the run's seccomp filter before execve.
 * So no program can signal, ptrace, prlimit, renice or re-pin the init (all need the
 * same uid or a capability), and as the pid namespace's init it receives no signal
 * from inside that it has no handler for (it has none). It is not dumpable either.
 * After each run it checks that its own rlimits, nice value, scheduling policy and
 * CPU affinity are as they were at start; if not, it says so and exits, and the host
 * replaces the jail.
 *
 * Messages (fields separated by NUL bytes, numbers in decimal):
 *   server -> init  setup UID GID FILTER (first; FILTER: the seccomp BPF program, hex;
 *                                         UID -1: programs keep the init's identity)
 *   server -> init  run CWD NLIMITS {RESOURCE SOFT HARD}* ARGC ARGV* ENVC ENV*   + 3 fds
 *   server -> init  kill                 (kill the run's processes now)
 *   init -> server  ready                (after setup)
 *   init -> server  exited STATUS UTIME_US STIME_US MAXRSS_KIB WALL_NS IPC_LEFT TAINTED
 *   init -> server  error MESSAGE        (the program could not be started)
 * The init exits when the server closes the socket; the jail dies with it. With
 * "--connect PATH" it connects to that unix socket for its control socket instead of
 * finding it on fd 3 (a container's init: Docker passes no fds).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <grp.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/capability.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

#define CONTROL 3
#define MAX_MSG (1 << 16)
#define MAX_ITEMS 4096
#define MAX_FILTER 4096
#define NLIMITS 16

static char buf[MAX_MSG + 1];
static char *argv_[MAX_ITEMS + 1];
static char *envp_[MAX_ITEMS + 1];

/* From "setup": who the programs run as, and the seccomp filter they get. */
static long long run_uid = -1, run_gid = -1;
static struct sock_filter filter[MAX_FILTER];
static unsigned short filter_len;

/* What the init was at start: a run must not be able to change any of it. */
static struct {
    struct rlimit limits[NLIMITS];
    int nice, policy;
    cpu_set_t cpus;
} pristine;

static void snapshot(void *out) {
    typeof(pristine) *state = out;
    memset(state, 0, sizeof *state);
    for (int r = 0; r < NLIMITS && r < RLIM_NLIMITS; r++) getrlimit(r, &state->limits[r]);
    errno = 0;
    state->nice = getpriority(PRIO_PROCESS, 0);
    state->policy = sched_getscheduler(0);
    sched_getaffinity(0, sizeof state->cpus, &state->cpus);
}

static int tainted(void) {
    typeof(pristine) now;
    snapshot(&now);
    return memcmp(&now, &pristine, sizeof now) != 0;
}

static void reply(const char *text, size_t len) {
    while (send(CONTROL, text, len, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

static void reply_error(const char *what, int err) {
    char out[512];
    int n = snprintf(out, sizeof out, "error%c%s: %s", 0, what, strerror(err));
    reply(out, (size_t)n);
}

static char *field(char **cursor, char *end);
static int number(char **cursor, char *end, long long *out);

/* Kill every process of the jail but us, and reap them all. */
static void kill_and_reap(void) {
    kill(-1, SIGKILL);
    for (;;) {
        pid_t pid = waitpid(-1, NULL, __WALL);
        if (pid < 0 && errno == ECHILD) return;
        if (pid < 0 && errno != EINTR) return;
    }
}

/* Remove the SysV shared memory, semaphores and message queues of our IPC namespace;
 * returns how many could not be removed. Their creator, the run's uid, may remove
 * them: we take its uid as our effective one meanwhile (every process of the run is
 * gone by now), keeping uid 0 as the saved one to come back to. */
static int remove_sysv_ipc(void) {
    static const char *files[3] = {"/proc/sysvipc/shm", "/proc/sysvipc/sem", "/proc/sysvipc/msg"};
    int left = 0;
    int switched = run_uid >= 0 && setresuid(-1, (uid_t)run_uid, -1) == 0;
    for (int kind = 0; kind < 3; kind++) {
        FILE *f = fopen(files[kind], "re");
        if (f == NULL) continue;
        char line[512];
        int header = 1;
        while (fgets(line, sizeof line, f)) {
            long long key, id;
            if (header) {
                header = 0;
                continue;
            }
            if (sscanf(line, "%lld %lld", &key, &id) != 2) continue;
            int r = kind == 0   ? shmctl((int)id, IPC_RMID, NULL)
                    : kind == 1 ? semctl((int)id, 0, IPC_RMID)
                                : msgctl((int)id, IPC_RMID, NULL);
            if (r < 0) left++;
        }
        fclose(f);
    }
    if (switched) {
        if (setresuid(-1, 0, -1) < 0) _exit(3); /* cannot be: the saved uid is 0 */
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);     /* a uid change may have reset it */
    }
    return left;
}

static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* "setup UID GID FILTER": 0 if well formed. */
static int setup(char *cursor, char *end) {
    long long uid, gid;
    char *text;
    if (number(&cursor, end, &uid) || number(&cursor, end, &gid) ||
        (text = field(&cursor, end)) == NULL)
        return -1;
    size_t len = strlen(text);
    if (len % (2 * sizeof(struct sock_filter)) || len / 2 / sizeof(struct sock_filter) > MAX_FILTER)
        return -1;
    unsigned char *out = (unsigned char *)filter;
    for (size_t i = 0; i < len; i += 2) {
        int hi = hex(text[i]), lo = hex(text[i + 1]);
        if (hi < 0 || lo < 0) return -1;
        out[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    filter_len = (unsigned short)(len / 2 / sizeof(struct sock_filter));
    run_uid = uid;
    run_gid = gid;
    return 0;
}

/* "--lower-oom-score": whether we lowered our OOM score to 0 at start (see main), so
 * that each run's must be raised back to 1000. */
static int oom_lowered;

static int write_oom_score(const char *value) {
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = write(fd, value, strlen(value));
    close(fd);
    return n == (ssize_t)strlen(value) ? 0 : -1;
}

/* In a run's process, before execve: the run's identity, no capability left, no
 * way to gain one, and the run's seccomp filter (last: it may forbid what precedes). */
static const char *become_run(void) {
    /* Runs are the OOM killer's first choice (raising needs no privilege; lowering
     * below 0 would, so a run can at most tie with the init, which then loses only
     * to a smaller process). */
    if (oom_lowered && write_oom_score("1000") < 0) return "oom_score_adj";
    if (run_uid >= 0) {
        /* CAP_SETPCAP is needed for this, and gone after the uid change. */
        for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) return "capbset";
        if (setgroups(0, NULL) < 0) return "setgroups";
        if (setresgid((gid_t)run_gid, (gid_t)run_gid, (gid_t)run_gid) < 0) return "setresgid";
        /* From uid 0 to another: the kernel clears permitted, effective and ambient. */
        if (setresuid((uid_t)run_uid, (uid_t)run_uid, (uid_t)run_uid) < 0) return "setresuid";
        struct __user_cap_header_struct header = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct data[2];
        memset(data, 0, sizeof data); /* ...and this the inheritable set too */
        if (syscall(SYS_capset, &header, data) < 0) return "capset";
    }
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return "no_new_privs";
    /* Exactly fds 0, 1 and 2 reach the program (the error pipe closes at exec). */
    if (syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        for (int fd = 3; fd < 65536; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    if (filter_len) {
        struct sock_fprog prog = {filter_len, filter};
        if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) < 0) return "seccomp";
    }
    return NULL;
}

/* The next NUL-terminated field of the message, or NULL past its end. */
static char *field(char **cursor, char *end) {
    char *start = *cursor;
    if (start >= end) return NULL;
    size_t len = strnlen(start, (size_t)(end - start));
    *cursor = start + len + 1;
    return start;
}

static int number(char **cursor, char *end, long long *out) {
    char *text = field(cursor, end);
    if (text == NULL || *text == 0) return -1;
    char *rest;
    errno = 0;
    *out = strtoll(text, &rest, 10);
    return (errno || *rest) ? -1 : 0;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static rlim_t as_rlim(long long value) {
    return value < 0 ? RLIM_INFINITY : (rlim_t)value;
}

static void run(char *cursor, char *end, int fds[3]) {
    long long nlimits, res[16], soft[16], hard[16], count;
    char *cwd = field(&cursor, end);
    if (cwd == NULL || number(&cursor, end, &nlimits) || nlimits < 0 || nlimits > 16) {
        reply_error("malformed run message", EINVAL);
        return;
    }
    for (long long i = 0; i < nlimits; i++) {
        if (number(&cursor, end, &res[i]) || number(&cursor, end, &soft[i]) ||
            number(&cursor, end, &hard[i])) {
            reply_error("malformed rlimit", EINVAL);
            return;
        }
    }
    char **lists[2] = {argv_, envp_};
    for (int l = 0; l < 2; l++) {
        if (number(&cursor, end, &count) || count < (l == 0) || count > MAX_ITEMS) {
            reply_error("malformed argv/env", EINVAL);
            return;
        }
        for (long long i = 0; i < count; i++) {
            if ((lists[l][i] = field(&cursor, end)) == NULL) {
                reply_error("truncated argv/env", EINVAL);
                return;
            }
        }
        lists[l][count] = NULL;
    }
    /* The child reports a failed exec through this pipe; it closes at exec. */
    int err_pipe[2];
    if (pipe2(err_pipe, O_CLOEXEC) < 0) {
        reply_error("pipe", errno);
        return;
    }
    int64_t started = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(err_pipe[0]);
        close(err_pipe[1]);
        reply_error("fork", err);
        return;
    }
    if (pid == 0) {
        const char *step = "sigprocmask";
        /* Signals as a fresh program expects them: none ignored, none blocked. */
        sigset_t none;
        sigemptyset(&none);
        if (sigprocmask(SIG_SETMASK, &none, NULL) < 0) goto fail;
        for (int sig = 1; sig < NSIG; sig++) signal(sig, SIG_DFL);
        step = "dup2";
        for (int i = 0; i < 3; i++)
            if (dup2(fds[i], i) < 0) goto fail;
        step = "setrlimit";
        for (long long i = 0; i < nlimits; i++) {
            /* Never above the ceilings we hold: raising one needs a privilege. */
            struct rlimit now, lim = {as_rlim(soft[i]), as_rlim(hard[i])};
            if (getrlimit((int)res[i], &now) < 0) goto fail;
            if (lim.rlim_max > now.rlim_max) lim.rlim_max = now.rlim_max;
            if (lim.rlim_cur > lim.rlim_max) lim.rlim_cur = lim.rlim_max;
            if (setrlimit((int)res[i], &lim) < 0) goto fail;
        }
        step = "setsid";
        if (setsid() < 0) goto fail;
        /* Scheduling as a fresh process's, whatever an earlier program did. */
        step = "sched";
        struct sched_param param = {0};
        if (sched_setscheduler(0, SCHED_OTHER, &param) < 0) goto fail;
        if (setpriority(PRIO_PROCESS, 0, pristine.nice) < 0) goto fail;
        if (sched_setaffinity(0, sizeof pristine.cpus, &pristine.cpus) < 0) goto fail;
        syscall(SYS_ioprio_set, 1 /* IOPRIO_WHO_PROCESS */, 0, 0 /* class none: default */);
        if ((step = become_run()) != NULL) goto fail;
        step = "chdir"; /* as the run's uid: its work dir may be its alone */
        if (chdir(cwd) < 0) goto fail;
        step = "execve";
        execve(argv_[0], argv_, envp_);
    fail:;
        char out[512];
        int n = snprintf(out, sizeof out, "%s: %s", step, strerror(errno));
        (void)!write(err_pipe[1], out, (size_t)n);
        _exit(127);
    }
    close(err_pipe[1]);
    for (int i = 0; i < 3; i++) close(fds[i]);
    char failure[512];
    ssize_t n;
    while ((n = read(err_pipe[0], failure, sizeof failure - 1)) < 0 && errno == EINTR) {
    }
    close(err_pipe[0]);
    if (n > 0) {
        kill_and_reap();
        char out[600];
        int len = snprintf(out, sizeof out, "error%c%.*s", 0, (int)n, failure);
        reply(out, (size_t)len);
        return;
    }
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0) {
        int err = errno;
        kill_and_reap();
        reply_error("pidfd_open", err);
        return;
    }
    /* Wait for the main process, serving kill requests meanwhile. */
    struct pollfd polls[2] = {{pidfd, POLLIN, 0}, {CONTROL, POLLIN, 0}};
    for (;;) {
        if (poll(polls, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (polls[0].revents) break;
        if (polls[1].revents) {
            ssize_t got = recv(CONTROL, buf, MAX_MSG, 0);
            if (got <= 0) { /* the server is gone: so is the run */
                kill_and_reap();
                _exit(0);
            }
            if (got >= 4 && memcmp(buf, "kill", 4) == 0) kill(-1, SIGKILL);
        }
    }
    close(pidfd);
    int status = 0;
    struct rusage usage;
    memset(&usage, 0, sizeof usage);
    while (wait4(pid, &status, 0, &usage) < 0 && errno == EINTR) {
    }
    int64_t wall = now_ns() - started;
    /* The run ends with its main process: whatever it left behind goes now. */
    kill_and_reap();
    int left = remove_sysv_ipc();
    int dirty = tainted();
    char out[256];
    int len = snprintf(out, sizeof out, "exited%c%d%c%lld%c%lld%c%ld%c%lld%c%d%c%d", 0, status, 0,
                       (long long)usage.ru_utime.tv_sec * 1000000 + usage.ru_utime.tv_usec, 0,
                       (long long)usage.ru_stime.tv_sec * 1000000 + usage.ru_stime.tv_usec, 0,
                       usage.ru_maxrss, 0, (long long)wall, 0, left, 0, dirty);
    reply(out, (size_t)len);
    if (dirty) _exit(3); /* never start another run in a changed init */
}

/* "--connect PATH": the control socket is a unix socket to connect to (a container's
 * init, whose host listens on a socket bind-mounted into the container). */
static int connect_control(const char *path) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof addr.sun_path) return -1;
    strcpy(addr.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) return -1;
    if (fd != CONTROL && (dup2(fd, CONTROL) < 0 || close(fd) < 0)) return -1;
    return 0;
}

/* "--reap": the process that holds a jail's pid namespace from outside (the process
 * sandbox's): wait for our child, the jail's init, and end as it ended. */
static int reap(void) {
    int status = 0, last = 0;
    for (;;) {
        pid_t pid = waitpid(-1, &status, 0);
        if (pid > 0) last = status;
        else if (errno != EINTR) break;
    }
    return WIFEXITED(last) ? WEXITSTATUS(last) : 128 + WTERMSIG(last);
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--reap") == 0) return reap();
    /* Root-owned /proc files, no ptrace, no core: nothing in the jail reaches into us. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (getpid() != 1) {
        fprintf(stderr, "codeexec jail init: must be pid 1 of its pid namespace\n");
        return 2;
    }
    int lower_oom = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--lower-oom-score") == 0) {
            lower_oom = 1;
        } else if (strcmp(argv[i], "--connect") == 0 && i + 1 < argc) {
            if (connect_control(argv[++i]) < 0) {
                perror("codeexec jail init: connect");
                return 2;
            }
        } else {
            fprintf(stderr, "codeexec jail init: unknown argument %s\n", argv[i]);
            return 2;
        }
    }
    if (fcntl(CONTROL, F_SETFD, FD_CLOEXEC) < 0) {
        perror("codeexec jail init: control socket");
        return 2;
    }
    /* Whatever the launcher left open (nsjail's --execute_fd, say) reaches no run. */
    if (syscall(SYS_close_range, CONTROL + 1, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
        for (int fd = CONTROL + 1; fd < 1024; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
    }
    /* The first message says who the programs run as and what they may call. */
    for (;;) {
        ssize_t got = recv(CONTROL, buf, MAX_MSG, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return 0;
        buf[got] = 0;
        char *cursor = buf, *end = buf + got;
        char *op = field(&cursor, end);
        if (op == NULL || strcmp(op, "setup") != 0 || setup(cursor, end) < 0) {
            fprintf(stderr, "codeexec jail init: expected a well-formed setup message\n");
            return 2;
        }
        break;
    }
    /* Where we are the only process of the run's cgroup that is not the run's (a
     * container), the least score we may take without a privilege; runs get 1000
     * (become_run). Elsewhere the slot's server shares the cgroup and must stay below
     * us: we keep the score we were started with (1000), like the runs. */
    if (lower_oom) oom_lowered = write_oom_score("0") == 0;
    snapshot(&pristine);
    reply("ready", 5);
    for (;;) {
        union {
            char space[CMSG_SPACE(sizeof(int) * 3)];
            struct cmsghdr align;
        } control;
        struct iovec iov = {buf, MAX_MSG};
        struct msghdr msg = {0};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.space;
        msg.msg_controllen = sizeof control.space;
        ssize_t got = recvmsg(CONTROL, &msg, MSG_CMSG_CLOEXEC);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) break;
        buf[got] = 0;
        int fds[3], nfds = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
            int n = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int *in = (int *)CMSG_DATA(c);
            for (int i = 0; i < n; i++) {
                if (nfds < 3) fds[nfds++] = in[i];
                else close(in[i]);
            }
        }
        char *cursor = buf, *end = buf + got;
        char *op = field(&cursor, end);
        if (op != NULL && strcmp(op, "run") == 0 && nfds == 3 && !(msg.msg_flags & MSG_CTRUNC)) {
            run(cursor, end, fds);
        } else {
            for (int i = 0; i < nfds; i++) close(fds[i]);
            if (op != NULL && strcmp(op, "kill") == 0) {
                kill_and_reap(); /* a kill that came after the run ended */
            } else if (op != NULL && strcmp(op, "run") == 0) {
                reply_error("run message without stdin, stdout and stderr", EINVAL);
            }
        }
    }
    kill_and_reap();
    return 0;
}
