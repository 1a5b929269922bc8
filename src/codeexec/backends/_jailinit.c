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
 * Why it is safe to share a uid with the programs: as the pid namespace's init it
 * receives no signal from inside the namespace that it has no handler for (it has
 * none), it is not dumpable (its /proc files are root's, no ptrace or /proc/1/mem),
 * and the seccomp policy nsjail installed applies to it too.
 *
 * Messages (fields separated by NUL bytes, numbers in decimal):
 *   server -> init  run CWD NLIMITS {RESOURCE SOFT HARD}* ARGC ARGV* ENVC ENV*   + 3 fds
 *   server -> init  kill                 (kill the run's processes now)
 *   init -> server  ready                (once, at start)
 *   init -> server  exited STATUS UTIME_US STIME_US MAXRSS_KIB WALL_NS IPC_LEFT
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

#define CONTROL 3
#define MAX_MSG (1 << 16)
#define MAX_ITEMS 4096

static char buf[MAX_MSG + 1];
static char *argv_[MAX_ITEMS + 1];
static char *envp_[MAX_ITEMS + 1];

static void reply(const char *text, size_t len) {
    while (send(CONTROL, text, len, MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

static void reply_error(const char *what, int err) {
    char out[512];
    int n = snprintf(out, sizeof out, "error%c%s: %s", 0, what, strerror(err));
    reply(out, (size_t)n);
}

/* Kill every process of the jail but us, and reap them all. */
static void kill_and_reap(void) {
    kill(-1, SIGKILL);
    for (;;) {
        pid_t pid = waitpid(-1, NULL, __WALL);
        if (pid < 0 && errno == ECHILD) return;
        if (pid < 0 && errno != EINTR) return;
    }
}

/* Remove the SysV shared memory, semaphores and message queues of our IPC namespace
 * (the run's uid owns them, so we may); returns how many could not be removed. */
static int remove_sysv_ipc(void) {
    static const char *files[3] = {"/proc/sysvipc/shm", "/proc/sysvipc/sem", "/proc/sysvipc/msg"};
    int left = 0;
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
    return left;
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
        step = "chdir";
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
    char out[256];
    int len = snprintf(out, sizeof out, "exited%c%d%c%lld%c%lld%c%ld%c%lld%c%d", 0, status, 0,
                       (long long)usage.ru_utime.tv_sec * 1000000 + usage.ru_utime.tv_usec, 0,
                       (long long)usage.ru_stime.tv_sec * 1000000 + usage.ru_stime.tv_usec, 0,
                       usage.ru_maxrss, 0, (long long)wall, 0, left);
    reply(out, (size_t)len);
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

int main(int argc, char **argv) {
    /* Root-owned /proc files, no ptrace, no core: nothing in the jail reaches into us. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    if (getpid() != 1) {
        fprintf(stderr, "codeexec jail init: must be pid 1 of its pid namespace\n");
        return 2;
    }
    if (argc == 3 && strcmp(argv[1], "--connect") == 0 && connect_control(argv[2]) < 0) {
        perror("codeexec jail init: connect");
        return 2;
    }
    if (fcntl(CONTROL, F_SETFD, FD_CLOEXEC) < 0) {
        perror("codeexec jail init: control socket");
        return 2;
    }
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
